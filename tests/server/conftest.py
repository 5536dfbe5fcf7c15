"""Tiny models and running servers for the server tests, built once per session or module."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfdeploy.server import ServerHandle, serve_savedmodel


def http(method: str, url: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    """Send one request; return the status and the JSON answer (text if it is not JSON)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode()


@pytest.fixture(scope="session")
def multi_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs ``a`` (3 floats) and ``b`` (2 int64); outputs ``total`` (per instance) and ``doubled``.

    A second signature ``checked`` fails at run time on non-finite values of ``x``.
    """
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()

    class Multi(tf.Module):  # type: ignore[misc]
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="a"),
                tf.TensorSpec([None, 2], tf.int64, name="b"),
            ]
        )
        def serve(self, a: Any, b: Any) -> dict[str, Any]:
            total = tf.reduce_sum(a, axis=1) + tf.cast(tf.reduce_sum(b, axis=1), tf.float32)
            return {"total": total, "doubled": a * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def checked(self, x: Any) -> dict[str, Any]:
            x = tf.debugging.assert_all_finite(x, "x must be finite")
            return {"y": x + 1.0}

    m = Multi()
    path = tmp_path_factory.mktemp("multi") / "savedmodel"
    return export_savedmodel(m, path, signatures={"serving_default": m.serve, "checked": m.checked})


@pytest.fixture(scope="session")
def examples_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF1-style model with classify (``serving_default``) and regress (``regress_x``) signatures.

    Both read feature ``x`` (one float) from serialized tf.Example protos: classify scores
    ``yes`` with x and ``no`` with 1 - x; regress answers 2x.
    """
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    v1 = tf.compat.v1
    path = tmp_path_factory.mktemp("examples") / "savedmodel"
    with tf.Graph().as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        scores = tf.concat([x, 1.0 - x], axis=1)
        classes = tf.tile(tf.constant([["yes", "no"]]), [tf.shape(x)[0], 1])
        with v1.Session() as sess:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={
                    "serving_default": v1.saved_model.classification_signature_def(
                        serialized, classes, scores
                    ),
                    "regress_x": v1.saved_model.regression_signature_def(serialized, x * 2.0),
                },
            )
            builder.save()
    return path


@pytest.fixture(scope="session")
def spin_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input ``n`` (int64); the model counts to the largest ``n`` before answering ``done``.

    A request with a large ``n`` keeps the model busy, so tests can fill its queue.
    """
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()

    class Spin(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
        def serve(self, n: Any) -> dict[str, Any]:
            limit = tf.reduce_max(n)
            count, _ = tf.while_loop(
                lambda i, a: i < limit,
                lambda i, a: (i + 1, a + 1.0),
                (tf.constant(0, tf.int64), tf.constant(0.0)),
            )
            return {"done": tf.fill(tf.shape(n), count)}

    return export_savedmodel(Spin(), tmp_path_factory.mktemp("spin") / "savedmodel")


@pytest.fixture(scope="module")
def digits_server(digits_savedmodel: Path) -> Iterator[ServerHandle]:
    """The digits model served in the background with gRPC, for one test module."""
    handle = serve_savedmodel(digits_savedmodel, port=0, grpc_port=0, background=True, quiet=True)
    assert handle is not None
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory, digits_savedmodel: Path) -> Path:
    """A model base path holding the digits model as version 1."""
    base = tmp_path_factory.mktemp("base") / "digits"
    shutil.copytree(digits_savedmodel, base / "1")
    return base
