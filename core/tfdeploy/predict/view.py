"""``view``: write a SavedModel's graphs for TensorBoard and launch it."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tfdeploy.errors import DependencyError, TfdeployError
from tfdeploy.predict import _tf
from tfdeploy.predict.runtime import LoadedModel

INSTALL_HINT = "pip install 'tfdeploy-kit[tensorboard]'"


def tensorboard_installed() -> bool:
    """Whether the ``tensorboard`` package can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


def write_graphs(
    path: str | os.PathLike[str], logdir: str | os.PathLike[str] | None = None
) -> Path:
    """Write the graph of every serving signature (the part of the model's graph that computes
    its outputs) as TensorBoard events; returns the log dir."""
    tf = _tf.tensorflow()
    model = LoadedModel(path)
    out = Path(logdir) if logdir else Path(tempfile.mkdtemp(prefix="tfdeploy-view-"))
    graph_def = model.graph.as_graph_def()
    try:
        for name, sig in model.signatures.items():
            ops = [spec.tensor_name.split(":")[0] for spec in sig.outputs.values()]
            part = tf.compat.v1.graph_util.extract_sub_graph(graph_def, ops)
            writer = tf.summary.create_file_writer(str(out / name))
            with writer.as_default():
                tf.summary.graph(part)
            writer.close()
    finally:
        model.close()
    return out


def launch_tensorboard(
    logdir: str | os.PathLike[str], *, port: int = 6006, host: str = "127.0.0.1"
) -> int:
    """Run TensorBoard on ``logdir`` until it exits, Ctrl-C or SIGTERM; returns its exit status.

    SIGTERM is passed on to TensorBoard, so stopping ``tfdeploy view`` never leaves it behind.
    """
    if not tensorboard_installed():
        raise DependencyError("TensorBoard is not installed", hint=INSTALL_HINT)
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    command += ["--port", str(port), "--host", host]
    try:
        process = subprocess.Popen(command)
    except OSError as exc:
        raise TfdeployError(f"cannot start TensorBoard: {exc}", hint=INSTALL_HINT) from exc
    previous = signal.signal(signal.SIGTERM, lambda signum, _: process.send_signal(signum))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
