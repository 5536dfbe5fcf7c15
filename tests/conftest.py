"""Shared test set-up. The digits fixtures come from tfdeploy's own pytest plugin
(``tfdeploy.testing``), the same ones plugin authors use; small extra models live here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def strings_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input ``text`` (strings); outputs ``length`` and ``echo_bytes`` (binary, so b64 in JSON)."""
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()

    class Echo(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text: Any) -> dict[str, Any]:
            return {"length": tf.strings.length(text), "echo_bytes": text}

    return export_savedmodel(Echo(), tmp_path_factory.mktemp("echo") / "savedmodel")


def _half_plus_two(path: Path, *, as_text: bool) -> Path:
    """TF Serving's test model half_plus_two, rebuilt the way TensorFlow 1.x wrote it.

    A graph with reference variables ``a = 0.5``, ``b = 2``, ``c = 3`` read through a
    ``ParseExample`` of ``x`` and ``x2`` (``x2`` defaults to 0), and TF Serving's signatures:
    ``serving_default`` (predict, ``x`` [-1, 1] -> ``y = a*x + b``), ``regress_x_to_y``,
    ``regress_x_to_y2`` (``a*x + c``), ``regress_x2_to_y3`` (a float input, ``a*x2 + c``),
    ``classify_x_to_y`` (scores only) and ``classify_x2_to_y3``.
    """
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        a = v1.Variable(0.5, name="a", use_resource=False)
        b = v1.Variable(2.0, name="b", use_resource=False)
        c = v1.Variable(3.0, name="c", use_resource=False)
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(
            serialized,
            {
                "x": v1.io.FixedLenFeature([1], tf.float32),
                "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        x = tf.identity(features["x"], name="x")
        x2 = tf.identity(features["x2"], name="x2")
        y = tf.add(a * x, b, name="y")
        y2 = tf.add(a * x, c, name="y2")
        y3 = tf.add(a * x2, c, name="y3")
        info = v1.saved_model.build_tensor_info

        def signature(inputs: Any, outputs: Any, method: str) -> Any:
            return v1.saved_model.build_signature_def(
                {k: info(t) for k, t in inputs.items()},
                {k: info(t) for k, t in outputs.items()},
                method,
            )

        regress, classify = "tensorflow/serving/regress", "tensorflow/serving/classify"
        signatures = {
            "serving_default": v1.saved_model.predict_signature_def({"x": x}, {"y": y}),
            "regress_x_to_y": v1.saved_model.regression_signature_def(serialized, y),
            "regress_x_to_y2": v1.saved_model.regression_signature_def(serialized, y2),
            "regress_x2_to_y3": signature({"inputs": x2}, {"outputs": y3}, regress),
            "classify_x_to_y": v1.saved_model.classification_signature_def(serialized, None, y),
            "classify_x2_to_y3": signature({"inputs": x2}, {"scores": y3}, classify),
        }
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
            builder.save(as_text=as_text)
    return path


@pytest.fixture(scope="session")
def half_plus_two_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model base path holding TF Serving's half_plus_two as version 123 (binary
    ``saved_model.pb``, TensorFlow 1.x reference variables)."""
    base = tmp_path_factory.mktemp("tf1") / "half_plus_two"
    _half_plus_two(base / "00000123", as_text=False)
    return base


@pytest.fixture(scope="session")
def half_plus_two_pbtxt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """half_plus_two written as ``saved_model.pbtxt``, as the R package shipped its models."""
    return _half_plus_two(tmp_path_factory.mktemp("tf1-text") / "savedmodel", as_text=True)


@pytest.fixture(scope="session")
def half_plus_two_model(half_plus_two_base: Path) -> Any:
    """half_plus_two loaded once per session."""
    from tfdeploy.predict.runtime import LoadedModel

    return LoadedModel(half_plus_two_base)


@pytest.fixture(scope="session")
def scalar_examples_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TensorFlow 1.x model whose ``ParseExample`` signatures have scalar shapes.

    Its serialized-example input is declared a scalar (``[]``) and its feature ``x`` too, as
    some estimator exports declare them, yet TF Serving feeds it a vector of examples.
    ``serving_default`` classifies into ``classes`` ``["low", "high"]`` with scores
    ``[1 - x/10, x/10]``; ``regress`` answers ``w * x`` with a reference variable ``w = 2``.
    """
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    v1 = tf.compat.v1
    path = tmp_path_factory.mktemp("tf1-scalar") / "savedmodel"
    with tf.Graph().as_default():
        w = v1.Variable(2.0, name="w", use_resource=False)
        serialized = v1.placeholder(tf.string, shape=[], name="tf_example")
        x = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([], tf.float32)})["x"]
        column = tf.reshape(x, [-1, 1]) / 10.0
        scores = tf.concat([1.0 - column, column], axis=1, name="scores")
        # Built from the data, not from shapes: grappler folds shapes from the declared ones.
        label = lambda name: tf.where(column > -1.0, name, name)  # noqa: E731
        classes = tf.concat([label("low"), label("high")], axis=1, name="classes")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={
                    "serving_default": v1.saved_model.classification_signature_def(
                        serialized, classes, scores
                    ),
                    "regress": v1.saved_model.regression_signature_def(
                        serialized, tf.identity(w * x, name="y")
                    ),
                },
            )
            builder.save()
    return path
