"""A SavedModel loaded once for many predictions: :func:`load_savedmodel`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdeploy.errors import InvalidModelError, PredictionError, code_name
from tfdeploy.model.savedmodel import read_model_info, resolve_model_dir
from tfdeploy.model.signatures import DEFAULT_SIGNATURE, ModelInfo, Signature
from tfdeploy.predict import _tf, wire
from tfdeploy.predict.predictions import Predictions


def load_savedmodel(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a SavedModel once for repeated predictions.

    ``path`` is the SavedModel directory, its ``saved_model.pb``, a base path of integer
    version folders (the highest wins), or a ``.tar``/``.tar.gz`` bundle.
    """
    return LoadedModel(path)


class LoadedModel:
    """A SavedModel loaded into TensorFlow, with its signatures' functions cached.

    Safe to call from several threads at once.
    """

    def __init__(self, path: str | os.PathLike[str], *, info: ModelInfo | None = None) -> None:
        tf = _tf.tensorflow()
        self.path: Path = resolve_model_dir(path)
        self.info: ModelInfo = info or read_model_info(self.path)
        serving = self.info.serving
        if serving is None:
            raise InvalidModelError(
                f"{self.path} has no MetaGraph tagged 'serve' "
                f"(tags: {[list(m.tags) for m in self.info.meta_graphs]})",
                hint="export the model with tf.saved_model.save or export_savedmodel",
            )
        try:
            self._loaded = tf.saved_model.load(str(self.path), tags=list(serving.tags))
        except Exception as exc:  # TensorFlow raises many unrelated types here
            raise InvalidModelError(
                f"TensorFlow cannot load {self.path}: {_first_line(exc)}",
                hint="check it with `tfdeploy validate`; re-export it if it is damaged",
            ) from exc
        self._functions: dict[str, Any] = dict(self._loaded.signatures)

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """The model's serving signatures, by name."""
        return self.info.signatures

    def signature(self, name: str | None = None) -> Signature:
        """The signature called ``name`` (``serving_default`` by default)."""
        return wire.select_signature(self.signatures, name)

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call one signature once on arrays already converted by the contract."""
        tf = _tf.tensorflow()
        fn = self._functions.get(signature_name)
        if fn is None:
            self.signature(signature_name)  # raises SignatureNotFoundError with the choices
            raise InvalidModelError(f"signature {signature_name!r} has no loadable function")
        try:
            result = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            raise PredictionError(
                f"the model failed on this input: {_first_line(exc)}",
                code=code_name(exc.error_code),
            ) from exc
        except (TypeError, ValueError) as exc:
            raise PredictionError(f"the model refused this input: {_first_line(exc)}") from exc
        return {k: v.numpy() for k, v in result.items()}

    def predict(
        self,
        body: Any,
        *,
        signature_name: str | None = None,
        batch_size: int = wire.DEFAULT_BATCH_SIZE,
    ) -> dict[str, Any]:
        """Answer a contract request body (``instances`` or ``inputs``) with its answer body."""
        request = wire.prepare(body, self.signatures, signature_name=signature_name)
        outputs = self._outputs(request, batch_size)
        return wire.answer(outputs, request.format, request.batch_size)

    def predict_instances(
        self,
        instances: Any,
        *,
        signature_name: str = DEFAULT_SIGNATURE,
        batch_size: int = wire.DEFAULT_BATCH_SIZE,
    ) -> Predictions:
        """Predict a list (or array) of instances and return :class:`Predictions`."""
        body = wire.as_request(instances, signature_name)
        request = wire.prepare(body, self.signatures)
        outputs = self._outputs(request, batch_size)
        return Predictions(arrays=outputs, output_names=list(request.signature.outputs))

    def _outputs(self, request: wire.PreparedRequest, batch_size: int) -> dict[str, np.ndarray]:
        name = request.signature.name
        return wire.concat_outputs([self.run(name, b) for b in request.batches(batch_size)])

    def __repr__(self) -> str:
        sigs: Sequence[str] = list(self.signatures)
        return f"<LoadedModel {str(self.path)!r} signatures={sigs}>"


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    # A graph error says "Graph execution error:" and where, before what went wrong.
    noise = ("Graph execution error", "Detected at node", "File ", "[[", "<stack traces")
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(exc).__name__])[0]
