"""The one place that imports TensorFlow, quietly.

Modules that load or write a model call :func:`tensorflow` instead of importing it at the top,
so that ``import tfdeploy`` and every command that loads no model stay fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tfdeploy.errors import DependencyError, InvalidModelError


def tensorflow() -> Any:
    """Import and return the ``tensorflow`` module, with its C++ start-up chatter silenced.

    TensorFlow's native code prints start-up notices (oneDNN, CUDA probing) straight to file
    descriptor 2, before its own log level applies, so the first import runs with that
    descriptor pointed at /dev/null. ``TFDEPLOY_DEBUG=1`` leaves it alone.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _quiet_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices()  # probes for GPUs now, while quiet
    except ImportError as exc:
        raise DependencyError(
            "TensorFlow is needed to load or write a model and is not installed",
            hint="pip install 'tfdeploy-kit[tensorflow]'",
        ) from exc
    return tf


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    if os.environ.get("TFDEPLOY_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def keras() -> Any:
    """Import and return Keras 3 (TensorFlow first, so Keras picks the TensorFlow backend)."""
    tensorflow()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras as keras_module

    return keras_module


def load_session(path: Path, tags: Iterable[str]) -> tuple[Any, Any, Any]:
    """Load the SavedModel at ``path`` as TF Serving does; return its graph, its session and
    a ``MetaGraphDef`` holding the loaded one's ``signature_def`` (its graph, held by the
    session already, is not kept twice).

    TensorFlow's v1 loader imports the MetaGraph tagged ``tags`` into a graph of its own,
    restores the variables and runs the init ops in a new session: what TF Serving's C++
    loader does, so TensorFlow 1.x and 2.x SavedModels load alike.
    """
    tf = tensorflow()
    from tensorflow.python.saved_model import loader_impl

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        with graph.as_default():
            meta_graph_def = loader_impl.SavedModelLoader(str(path)).load(session, list(tags))
    except Exception as exc:  # TensorFlow raises many unrelated types here
        session.close()
        text = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
        raise InvalidModelError(
            f"TensorFlow cannot load {path}: {text.splitlines()[0] if text else exc!r}",
            hint="check it with `tfdeploy validate`; re-export it if it is damaged",
        ) from exc
    from tensorflow.core.protobuf import meta_graph_pb2

    slim = meta_graph_pb2.MetaGraphDef()
    for name, signature in meta_graph_def.signature_def.items():
        slim.signature_def[name].CopyFrom(signature)
    return graph, session, slim


def session_callable(session: Any, feeds: Sequence[str], fetches: Sequence[str]) -> Any:
    """A callable running ``session`` with ``feeds`` (tensor names, fed positionally as numpy
    arrays) and returning the ``fetches``.

    Made from ``CallableOptions`` directly, as TF Serving's ``Session::Run``: the arrays reach
    the graph with their own shapes (``Session.run`` and ``make_callable`` would refuse shapes
    that differ from a placeholder's), and a call costs a fraction of ``Session.run``'s.
    """
    from tensorflow.core.protobuf import config_pb2

    options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
    return session._make_callable_from_options(options)
