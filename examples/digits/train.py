"""Train a small Keras classifier on scikit-learn's bundled 8x8 digits and export it.

    python examples/digits/train.py ./digits-savedmodel

The SavedModel's signature ``serving_default`` takes ``image`` (64 floats in [0, 1]) and
returns ``prediction`` (10 class probabilities): the layer names, as export_savedmodel promises.
"""

from __future__ import annotations

import sys

from tfdeploy import export_savedmodel, load_savedmodel, predict_savedmodel
from tfdeploy.examples.digits import load_digits, train


def main(export_dir: str) -> None:
    """Train, export, load once and predict a few digits."""
    model = train(epochs=15)  # a few seconds on a laptop CPU
    path = export_savedmodel(model, export_dir)
    print(f"exported to {path}")

    images, labels = load_digits()
    loaded = load_savedmodel(path)
    predictions = predict_savedmodel(images[:3].tolist(), loaded)
    print(predictions)
    print("labels:", labels[:3].tolist())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "digits-savedmodel")
