"""A small Keras classifier of scikit-learn's bundled 8x8 digits.

Input ``image``: 64 floats in [0, 1] (the 8x8 pixels, row by row). Output ``prediction``:
10 class probabilities. Trains in a few seconds on a CPU; downloads nothing.

Run ``python -m tfdeploy.examples.digits OUT_DIR`` to train it and export a SavedModel.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfdeploy.predict import _tf


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as ``(images, labels)``: float32 ``(1797, 64)`` in [0, 1] and int labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        from tfdeploy.errors import DependencyError

        raise DependencyError(
            "the digits example needs scikit-learn", hint="pip install 'tfdeploy-kit[examples]'"
        ) from exc
    data = sklearn_digits()
    return (data.data / 16.0).astype("float32"), data.target.astype("int64")


def build_model() -> Any:
    """A functional Keras model: ``image`` (64) -> ``prediction`` (10 probabilities)."""
    keras = _tf.keras()
    image = keras.Input(shape=(64,), name="image")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(image)
    prediction = keras.layers.Dense(10, activation="softmax", name="prediction")(hidden)
    return keras.Model(image, prediction, name="digits")


def train(epochs: int = 15, seed: int = 0) -> Any:
    """Build and train the classifier; returns the Keras model (about 95% accuracy)."""
    keras = _tf.keras()
    keras.utils.set_random_seed(seed)
    images, labels = load_digits()
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=epochs, batch_size=64, verbose=0)
    return model


def main(argv: list[str] | None = None) -> None:
    """Train the classifier and export it as a SavedModel."""
    from tfdeploy.predict.export import export_savedmodel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    model = train(epochs=args.epochs)
    path = export_savedmodel(model, os.fspath(args.export_dir))
    images, labels = load_digits()
    accuracy = float((model.predict(images, verbose=0).argmax(axis=1) == labels).mean())
    print(f"trained on {len(labels)} digits (accuracy {accuracy:.1%}); SavedModel in {path}")


if __name__ == "__main__":
    main()
