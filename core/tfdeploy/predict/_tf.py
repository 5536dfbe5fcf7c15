"""The one place that imports TensorFlow, quietly.

Modules that load or write a model call :func:`tensorflow` instead of importing it at the top,
so that ``import tfdeploy`` and every command that loads no model stay fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from tfdeploy.errors import DependencyError


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
