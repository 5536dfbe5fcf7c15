"""The seeds' workload: an MNIST-shaped model, the digits model, and the bodies every server gets.

The MNIST-shaped model takes ``image``, 784 floats (28x28 pixels in [0, 1]), and answers
``prediction``, 10 probabilities. Its images are scikit-learn's bundled 8x8 digits upsampled to
28x28 by bilinear interpolation (numpy only), so nothing is downloaded and the pixel values are
real ones: about 40% zeros, the rest varied fractions. The model is a small Keras dense network
trained for a few epochs (seconds) and written with tfdeploy's ``export_savedmodel``.

Payloads (the same instances for every server):

- ``A``: one MNIST-shaped instance per request;
- ``B``: 32 MNIST-shaped instances per request;
- ``digits``: one 64-float instance for the digits model (the earlier benchmarks' payload).

Bodies are made as a client would: ``json.dumps`` of the float32 array's ``tolist()``.
"""

from __future__ import annotations

import json
import statistics
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MNIST_SIDE = 28
BATCH = 32
INPUT = "image"
OUTPUT = "prediction"


@dataclass(frozen=True)
class Payload:
    """One request body shape: its instances, for the model ``model`` (``mnist``/``digits``)."""

    name: str
    model: str
    instances: np.ndarray

    @property
    def count(self) -> int:
        """Instances per request."""
        return int(self.instances.shape[0])

    def v1_body(self) -> bytes:
        """TF Serving's row format, ``{"instances": [[...], ...]}`` (the body most servers get)."""
        return json.dumps({"instances": self.instances.tolist()}).encode()

    def v2_body(self) -> bytes:
        """The same instances in the KServe v2 / Triton inference protocol."""
        tensor = {
            "name": INPUT,
            "shape": list(self.instances.shape),
            "datatype": "FP32",
            "data": self.instances.tolist(),
        }
        return json.dumps({"inputs": [tensor]}).encode()

    def grpc_frame(self, model_name: str) -> tuple[bytes, Any]:
        """The gRPC message frame of a ``PredictRequest`` (0 byte, 4-byte length, message)."""
        from tfdeploy.predict import _tf

        tf = _tf.tensorflow()
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(self.instances))
        raw = request.SerializeToString()
        return b"\x00" + struct.pack(">I", len(raw)) + raw, request


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of 1-D linear interpolation (pixel centres aligned)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def mnist_images() -> tuple[np.ndarray, np.ndarray]:
    """The digits upsampled to 28x28: float32 ``(1797, 784)`` in [0, 1], and their labels."""
    from tfdeploy.examples.digits import load_digits

    images, labels = load_digits()
    w = _linear_weights(8, MNIST_SIDE)
    big = np.einsum("oi,nij,pj->nop", w, images.reshape(-1, 8, 8), w)
    return big.reshape(-1, MNIST_SIDE * MNIST_SIDE).astype(np.float32), labels


def build_models(workdir: Path) -> dict[str, Path]:
    """Train and export both models; returns their SavedModel directories by name."""
    from tfdeploy.examples import digits
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    images, labels = mnist_images()
    image = keras.Input(shape=(images.shape[1],), name=INPUT)
    hidden = keras.layers.Dense(128, activation="relu", name="hidden")(image)
    prediction = keras.layers.Dense(10, activation="softmax", name=OUTPUT)(hidden)
    model = keras.Model(image, prediction, name="mnist_shaped")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=5, batch_size=64, verbose=0)
    return {
        "mnist": export_savedmodel(model, workdir / "mnist"),
        "digits": export_savedmodel(digits.train(epochs=5), workdir / "digits"),
    }


def payloads() -> dict[str, Payload]:
    """Payloads A, B and digits, by name."""
    from tfdeploy.examples.digits import load_digits

    images, _ = mnist_images()
    small, _ = load_digits()
    return {
        "A": Payload("A", "mnist", images[:1]),
        "B": Payload("B", "mnist", images[:BATCH]),
        "digits": Payload("digits", "digits", small[:1]),
    }


def reference(model_dir: Path, instances: np.ndarray) -> np.ndarray:
    """The signature's own answer on ``instances``: what every server must answer."""
    return np.asarray(_signature(model_dir)(**{INPUT: instances})[OUTPUT])


_SIGNATURES: dict[Path, Any] = {}


def _signature(model_dir: Path) -> Any:
    if model_dir not in _SIGNATURES:
        from tfdeploy.predict import _tf

        tf = _tf.tensorflow()
        loaded = tf.saved_model.load(str(model_dir))
        _SIGNATURES[model_dir] = (loaded, loaded.signatures["serving_default"])
    return _SIGNATURES[model_dir][1]


def floor(model_dir: Path, instances: np.ndarray, seconds: float) -> dict[str, float]:
    """The in-process floor: the signature called directly on a ready tensor.

    Returns the median µs per call over five timed stretches (after a warm-up) and the
    instances per second that makes.
    """
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    fn = _signature(model_dir)
    tensor = tf.constant(instances)
    for _ in range(50):
        fn(**{INPUT: tensor})
    per_call: list[float] = []
    stretch = max(seconds / 5, 0.05)
    for _ in range(5):
        calls = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < stretch:
            fn(**{INPUT: tensor})
            calls += 1
        per_call.append(elapsed / calls)
    us = statistics.median(per_call) * 1e6
    return {"us_per_call": us, "instances_per_s": instances.shape[0] / us * 1e6}
