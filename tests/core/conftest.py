"""Small extra models for the core tests, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def multi_io_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras model with inputs ``a`` (3 floats) and ``b`` (2 floats), outputs ``score`` and ``logits``."""
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    keras = _tf.keras()
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    score = keras.layers.Dense(1, name="score")(joined)
    logits = keras.layers.Dense(2, name="logits")(joined)
    model = keras.Model([a, b], [score, logits])
    return export_savedmodel(model, tmp_path_factory.mktemp("multi") / "savedmodel")
