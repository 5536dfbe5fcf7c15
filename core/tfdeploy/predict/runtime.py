"""A SavedModel loaded once for many predictions: :func:`load_savedmodel`.

The model is loaded the way TF Serving loads it: its serving MetaGraph is imported into a graph
of its own, a session restores the variables and runs the init ops (TensorFlow's v1 loader, the
one TF Serving's C++ loader mirrors), and each signature runs as a session call that feeds the
signature's input tensors and fetches its output tensors. So every SavedModel TF Serving loads
loads here (TensorFlow 1.x graphs with reference variables and ``ParseExample`` signatures
included, binary or ``saved_model.pbtxt``), and inputs reach the graph as TF Serving feeds
them: with the shapes the request gives, whatever shapes the signature declares; the graph's
own operations accept or refuse them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdeploy.errors import InvalidInputError, InvalidModelError, PredictionError, code_name
from tfdeploy.model.savedmodel import read_model_info, resolve_model_dir
from tfdeploy.model.signatures import DEFAULT_SIGNATURE, ModelInfo, Signature
from tfdeploy.predict import _tf, wire
from tfdeploy.predict.predictions import Predictions

log = logging.getLogger(__name__)

#: A model that reads variables its checkpoint does not restore fails with this (TF Serving too).
_UNRESTORED = "Could not find variable"


def load_savedmodel(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a SavedModel once for repeated predictions.

    ``path`` is the SavedModel directory, its ``saved_model.pb`` (or ``saved_model.pbtxt``), a
    base path of integer version folders (the highest wins), or a ``.tar``/``.tar.gz`` bundle.
    """
    return LoadedModel(path)


class LoadedModel:
    """A SavedModel loaded into a TensorFlow session as TF Serving loads it.

    :attr:`info` is what the model layer read from disk, :attr:`meta_graph_def` the
    ``MetaGraphDef`` TensorFlow loaded. Safe to call from several threads at once;
    :meth:`close` releases the session.
    """

    def __init__(self, path: str | os.PathLike[str], *, info: ModelInfo | None = None) -> None:
        self.path: Path = resolve_model_dir(path)
        self.info: ModelInfo = info or read_model_info(self.path)
        serving = self.info.serving
        if serving is None:
            raise InvalidModelError(
                f"{self.path} has no MetaGraph tagged 'serve' "
                f"(tags: {[list(m.tags) for m in self.info.meta_graphs]})",
                hint="export the model with tf.saved_model.save or export_savedmodel",
            )
        self.graph, self._session, self.meta_graph_def = _tf.load_session(self.path, serving.tags)
        self._callables: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()
        self._objects: Any = None  # TensorFlow's object loader, once the session cannot run it

    @property
    def tf_serving_runs(self) -> bool:
        """Whether the model's serving graph runs as TF Serving runs it (a session over the
        restored checkpoint). ``False`` once a call found that the graph reads variables its
        checkpoint does not restore (``tf.saved_model.save`` of a Keras 3 model): such a
        model is then run through TensorFlow's object loader, which TF Serving has not."""
        return self._objects is None

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """The model's serving signatures, by name."""
        return self.info.signatures

    def signature(self, name: str | None = None) -> Signature:
        """The signature called ``name`` (``serving_default`` by default)."""
        return wire.select_signature(self.signatures, name)

    def run(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one signature once: feed ``inputs`` (arrays keyed by the signature's input names,
        of its dtypes, any shape) and fetch ``outputs`` (all of the signature's by default)."""
        tf = _tf.tensorflow()
        sig = self.signature(signature_name)
        if inputs.keys() != sig.inputs.keys():
            raise _input_mismatch(sig, inputs)
        keys = tuple(inputs)
        wanted = tuple(outputs) if outputs is not None else tuple(sig.outputs)
        if self._objects is not None:
            return self._run_objects(sig, inputs, wanted)
        call = self._callable(sig, keys, wanted)
        try:
            values = call(*[_feedable(sig, k, inputs[k]) for k in keys])
        except tf.errors.OpError as exc:
            if _UNRESTORED in _first_line(exc) and self._load_objects():
                return self._run_objects(sig, inputs, wanted)
            raise _model_error(exc) from exc
        except (TypeError, ValueError) as exc:
            raise PredictionError(
                f"the model refused this input: {_first_line(exc)}",
                hint=wire.signature_hint(sig),
            ) from exc
        names = _unique_fetches(sig, wanted)
        fetched = dict(zip(names, values, strict=True))
        return {k: fetched[sig.outputs[k].tensor_name] for k in wanted}

    def _callable(self, sig: Signature, keys: tuple[str, ...], wanted: tuple[str, ...]) -> Any:
        cache_key = (sig.name, keys, wanted)
        call = self._callables.get(cache_key)
        if call is not None:
            return call
        with self._lock:
            call = self._callables.get(cache_key)
            if call is None:
                unknown = [k for k in wanted if k not in sig.outputs]
                if unknown:
                    raise InvalidInputError(
                        f"output tensor alias not found in signature: {unknown[0]} Outputs "
                        f"expected to be in the set {{{','.join(sorted(sig.outputs))}}}."
                    )
                feeds = [sig.inputs[k].tensor_name for k in keys]
                try:
                    call = _tf.session_callable(self._session, feeds, _unique_fetches(sig, wanted))
                except Exception as exc:  # TensorFlow raises several unrelated types here
                    raise InvalidModelError(
                        f"signature {sig.name!r} names tensors the graph does not have: "
                        f"{_first_line(exc)}",
                        hint="the SavedModel is damaged; export it again",
                    ) from exc
                self._callables[cache_key] = call
        return call

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
        return wire.answer(outputs, request.format)

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

        def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return self.run(name, inputs)

        try:
            if request.batch_size is None:
                return run(request.inputs)
            return wire.run_in_batches(run, request.inputs, request.batch_size, batch_size)
        except PredictionError as exc:
            raise wire.explain_refusal(request, exc) from exc

    def _load_objects(self) -> bool:
        """Switch to TensorFlow's object loader, which restores the variables the graph reads
        by their object paths; ``False`` if it cannot load the model either."""
        tf = _tf.tensorflow()
        with self._lock:
            if self._objects is None:
                try:
                    self._objects = tf.saved_model.load(str(self.path))
                except Exception:  # TensorFlow raises many unrelated types; keep the first error
                    log.debug("the object loader cannot load %s either", self.path, exc_info=True)
                    return False
                log.warning(
                    "%s: its serving graph reads variables its checkpoint does not restore, so "
                    "TF Serving cannot run it; predicting through TensorFlow's object loader. "
                    "Export it again with tfdeploy's export_savedmodel (or Keras's model.export()) "
                    "for TF Serving",
                    self.path,
                )
                self._callables.clear()
                self._session.close()
        return True

    def _run_objects(
        self, sig: Signature, inputs: Mapping[str, np.ndarray], wanted: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        tf = _tf.tensorflow()
        function = self._objects.signatures.get(sig.name)
        if function is None:
            raise PredictionError(
                f"TensorFlow's object loader has no signature {sig.name!r} in {self.path}",
                hint="export the model again with export_savedmodel",
            )
        try:
            result = function(**{k: tf.constant(_feedable(sig, k, v)) for k, v in inputs.items()})
        except tf.errors.OpError as exc:
            raise _model_error(exc) from exc
        except (TypeError, ValueError) as exc:
            raise PredictionError(
                f"the model refused this input: {_first_line(exc)}",
                hint=wire.signature_hint(sig),
            ) from exc
        return {k: result[k].numpy() for k in wanted}

    def close(self) -> None:
        """Release the session and what the model holds in memory."""
        with self._lock:
            self._callables.clear()
            self._session.close()
            self._objects = None

    def __repr__(self) -> str:
        sigs: Sequence[str] = list(self.signatures)
        return f"<LoadedModel {str(self.path)!r} signatures={sigs}>"


def _unique_fetches(sig: Signature, wanted: tuple[str, ...]) -> list[str]:
    """The distinct output tensors of ``wanted`` (two aliases may name the same tensor)."""
    return list(dict.fromkeys(sig.outputs[k].tensor_name for k in wanted))


def _feedable(sig: Signature, key: str, array: np.ndarray) -> np.ndarray:
    """``array`` in the numpy dtype TensorFlow takes for the input (bfloat16 has its own)."""
    spec = sig.inputs[key]
    if spec.dtype == "DT_BFLOAT16" and array.dtype != wire.numpy_dtype(spec):
        return array.astype(wire.numpy_dtype(spec))
    return array


def _input_mismatch(sig: Signature, inputs: Mapping[str, np.ndarray]) -> InvalidInputError:
    """TF Serving's error for a request whose inputs are not the signature's."""
    sent, declared = sorted(inputs), sorted(sig.inputs)
    extra = [k for k in sent if k not in sig.inputs]
    missing = [k for k in declared if k not in inputs]
    if len(sent) == len(declared) and extra:
        return InvalidInputError(
            f"input tensor alias not found in signature: {extra[0]}. Inputs expected to be in "
            f"the set {{{','.join(declared)}}}."
        )
    return InvalidInputError(
        f"input size does not match signature: {len(sent)}!={len(declared)} "
        f"len({{{','.join(sent)}}}) != len({{{','.join(declared)}}}). "
        f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.",
        hint=f"signature {sig.name!r} takes inputs {', '.join(declared)}",
    )


def _model_error(exc: Any) -> PredictionError:
    text = _first_line(exc)
    code = code_name(exc.error_code)
    if _UNRESTORED in text:
        return PredictionError(
            f"the model failed on this input: {text}",
            code=code,
            hint="the serving graph reads variables its checkpoint does not restore, so TF "
            "Serving cannot run it either (a tf.Module holding a Keras 3 model does this); "
            "export Keras models with export_savedmodel",
        )
    return PredictionError(f"the model failed on this input: {text}", code=code)


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    # A graph error says "Graph execution error:" and where, before what went wrong.
    noise = ("Graph execution error", "Detected at node", "File ", "[[", "<stack traces")
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(exc).__name__])[0]
