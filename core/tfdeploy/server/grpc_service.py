"""TF Serving's gRPC API over a :class:`ModelRepository`: PredictionService and ModelService.

Uses the servicer base classes and messages that ``tensorflow-serving-api`` generates, so its
stubs (``prediction_service_pb2_grpc.PredictionServiceStub``...) work unchanged. Requests are
checked and answered as TF Serving's ``predict_util``, ``classifier``, ``regressor``,
``multi_inference`` and metadata/status code does, with its error codes and words: inputs are
fed with the shapes the request gives (the model accepts or refuses them), outputs come back in
the typed value fields (``float_val``, ``int64_val``, ``string_val``, ...) as TF Serving's
``Predict`` writes them, and ``output_filter`` fetches only the outputs it names. The server
runs on its own thread and event loop (``grpc.aio``) and shares the REST server's batchers.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tfdeploy.errors import (
    ConfigError,
    DependencyError,
    InvalidInputError,
    PredictionError,
    SignatureNotFoundError,
    TfdeployError,
)
from tfdeploy.model.protowire import length_delimited
from tfdeploy.model.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    DTYPE_NAMES,
    DTYPE_NUMBERS,
    NUMPY_DTYPES,
    REGRESS_METHOD,
    Signature,
    TensorSpec,
)
from tfdeploy.predict import _tf, tfexample, wire
from tfdeploy.server import tensor_checks
from tfdeploy.server.limits import DEFAULT_MAX_BODY_BYTES, ByteBudget
from tfdeploy.server.repository import ModelRepository, Servable, configs_from_proto

log = logging.getLogger("tfdeploy.server")

#: TensorFlow's error.Code numbers for the canonical codes (tensorflow/core/protobuf/error_codes.proto).
_TF_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

T = TypeVar("T")


def _require_apis() -> None:
    _tf.tensorflow()  # the generated modules import TensorFlow; import it quietly first
    try:
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
    except ImportError as exc:
        raise DependencyError(
            "tensorflow-serving-api is needed for the gRPC API",
            hint="pip install 'tfdeploy-kit[serve]'",
        ) from exc


def _rpc(route: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Turn tfdeploy's errors into gRPC statuses (never a traceback) and count the call."""

    def wrap(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: Any) -> T:
            import grpc

            started = time.perf_counter()
            code = "OK"
            held = 0
            try:
                if isinstance(request, MalformedRequest):
                    raise InvalidInputError(
                        f"the {route} request is not a valid message: {request.error}"
                    )
                size = request.ByteSize()
                self.budget.reserve(size)
                held = size
                return await method(self, request, context)
            except TfdeployError as exc:
                code = exc.code
                self.metrics.errors.inc(code)
                status = getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN)
                await context.abort(status, exc.describe())
                raise  # abort raises; this keeps type checkers content
            except Exception as exc:
                if isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "AbortError":
                    raise
                code = "INTERNAL"
                log.exception("internal error in gRPC %s", route)
                self.metrics.errors.inc(code)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
                raise
            finally:
                self.budget.release(held)
                self.metrics.requests.inc("grpc", route, code)
                self.metrics.latency.observe(time.perf_counter() - started, "grpc", route)

        return handler

    return wrap


class MalformedRequest:
    """What a call's request becomes when its bytes are not the message they should be."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A request deserializer that hands the handler a :class:`MalformedRequest` instead of
    raising (which grpcio answers UNKNOWN), so a corrupt message is INVALID_ARGUMENT."""
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # protobuf's DecodeError, bad UTF-8 in a string field...
            return MalformedRequest(exc)

    return parse


def _malformed_interceptor() -> Any:
    import grpc

    class Tolerant(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        """Wraps every method's request deserializer with :func:`_tolerant`."""

        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or handler.request_deserializer is None:
                return handler
            return handler._replace(request_deserializer=_tolerant(handler.request_deserializer))

    return Tolerant()


def _spec_target(spec: Any) -> tuple[str, int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return spec.name, version, label


def tensors_to_inputs(
    tensors: Mapping[str, Any], signature: Signature, *, max_bytes: int | None = None
) -> tuple[dict[str, np.ndarray], int | None]:
    """Convert a request's TensorProtos into arrays for ``signature``, as TF Serving does.

    The inputs must be the signature's (TF Serving's words when not); each array has the shape
    its TensorProto declares, whatever shape the signature declares. Each tensor's values are
    checked against its own declared shape, and the arrays they decode to against ``max_bytes``
    in all, before any is decoded (:mod:`tfdeploy.server.tensor_checks`). Returns the arrays and
    the batch size shared by every input (``None`` when they share none, or when the
    signature's inputs have no batch dimension, and the request must run alone).
    """
    tf = _tf.tensorflow()
    given, expected = sorted(tensors), sorted(signature.inputs)
    if len(given) != len(expected):
        extra = [k for k in given if k not in signature.inputs]
        missing = [k for k in expected if k not in tensors]
        raise InvalidInputError(
            f"input size does not match signature: {len(given)}!={len(expected)} "
            f"len({{{','.join(given)}}}) != len({{{','.join(expected)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.",
            hint=wire.signature_hint(signature),
        )
    arrays: dict[str, np.ndarray] = {}
    for key in given:
        spec = signature.inputs.get(key)
        if spec is None:
            raise InvalidInputError(
                f"input tensor alias not found in signature: {key}. Inputs expected to be in the "
                f"set {{{','.join(expected)}}}.",
                hint=wire.signature_hint(signature),
            )
        proto = tensors[key]
        got = DTYPE_NAMES.get(proto.dtype, str(proto.dtype))
        if got != spec.dtype:
            raise InvalidInputError(
                f"input {key!r} expects {spec.dtype}; got {got} (Expects arg to be "
                f"{wire.tf_type(spec.dtype)} but {wire.tf_type(got)} is provided)",
                hint=wire.signature_hint(signature),
            )
    total = sum(tensor_checks.decoded_bytes(tensors[key], key) for key in given)
    if max_bytes is not None:
        tensor_checks.check_request_size(total, max_bytes)
    for key in given:
        spec = signature.inputs[key]
        proto = tensors[key]
        try:
            arr = _fast_ndarray(proto, spec)
            if arr is None:
                arr = tf.make_ndarray(proto)
        except Exception as exc:
            raise InvalidInputError(
                f"tensor parsing error: {key} (not a valid TensorProto: {exc})"
            ) from exc
        arrays[key] = arr
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    batchable = all(
        s.shape is not None and s.shape and s.shape[0] is None for s in signature.inputs.values()
    )
    size = sizes.pop() if len(sizes) == 1 and batchable else None
    return arrays, size


#: dtypes whose TensorProto ``tensor_content`` is the raw little-endian array.
_RAW_DTYPES = {
    name: np.dtype(NUMPY_DTYPES[name])
    for name in NUMPY_DTYPES
    if name not in ("DT_STRING", "DT_BFLOAT16")
}


def _fast_ndarray(proto: Any, spec: TensorSpec) -> np.ndarray | None:
    """The array of a TensorProto sent as raw ``tensor_content`` (what ``tf.make_tensor_proto``
    writes for numeric arrays), without TensorFlow's slower general path; ``None`` otherwise."""
    dtype = _RAW_DTYPES.get(spec.dtype)
    if dtype is None or not proto.tensor_content:
        return None
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)


#: numpy dtype -> (TensorFlow dtype, the TensorProto field TF Serving's ``AsProtoField`` fills).
_TYPED_FIELDS: dict[str, tuple[str, str]] = {
    "float32": ("DT_FLOAT", "float_val"),
    "float64": ("DT_DOUBLE", "double_val"),
    "int32": ("DT_INT32", "int_val"),
    "int16": ("DT_INT16", "int_val"),
    "int8": ("DT_INT8", "int_val"),
    "uint8": ("DT_UINT8", "int_val"),
    "uint16": ("DT_UINT16", "int_val"),
    "int64": ("DT_INT64", "int64_val"),
    "bool": ("DT_BOOL", "bool_val"),
    "uint32": ("DT_UINT32", "uint32_val"),
    "uint64": ("DT_UINT64", "uint64_val"),
    "float16": ("DT_HALF", "half_val"),
    "bfloat16": ("DT_BFLOAT16", "half_val"),
    "object": ("DT_STRING", "string_val"),
    "complex64": ("DT_COMPLEX64", "scomplex_val"),
    "complex128": ("DT_COMPLEX128", "dcomplex_val"),
}
#: Packed fields whose wire bytes are the array's own little-endian bytes: field number, dtype.
_PACKED_RAW = {"float_val": (5, "<f4"), "double_val": (6, "<f8"), "scomplex_val": (9, "<f4")}
_PACKED_RAW["dcomplex_val"] = (12, "<f8")


def fill_tensor_proto(out: Any, arr: np.ndarray) -> None:
    """Write ``arr`` into the TensorProto ``out`` as TF Serving's ``Predict`` does
    (``Tensor::AsProtoField``): the dtype, the shape and every value in the typed field."""
    kind = "object" if arr.dtype.kind in "OSU" else arr.dtype.name
    typed = _TYPED_FIELDS.get(kind)
    if typed is None:
        out.CopyFrom(_tf.tensorflow().make_tensor_proto(arr))
        return
    name, field = typed
    out.dtype = DTYPE_NUMBERS[name]
    for d in arr.shape:
        out.tensor_shape.dim.add(size=d)
    flat = arr.reshape(-1)
    if field in _PACKED_RAW:
        number, little = _PACKED_RAW[field]
        raw = np.ascontiguousarray(flat.view(np.float32 if little == "<f4" else np.float64))
        out.MergeFromString(length_delimited(number, raw.astype(little, copy=False).tobytes()))
    elif field == "half_val":
        getattr(out, field).extend(flat.view(np.uint16).tolist())
    elif field == "string_val":
        out.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist())
    else:
        getattr(out, field).extend(flat.tolist())


def _tensor_info(spec: TensorSpec, meta_graph_pb2: Any) -> Any:
    info = meta_graph_pb2.TensorInfo(name=spec.tensor_name, dtype=DTYPE_NUMBERS.get(spec.dtype, 0))
    if not spec.has_shape:
        return info
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
    else:
        names = spec.dim_names or ("",) * len(spec.shape)
        for d, n in zip(spec.shape, names, strict=True):
            info.tensor_shape.dim.add(size=-1 if d is None else d, name=n)
    return info


def signature_def_map(servable: Servable) -> Any:
    """A ``SignatureDefMap`` message for a servable: every SignatureDef of its MetaGraph."""
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    out = get_model_metadata_pb2.SignatureDefMap()
    meta = servable.meta_graph_def
    if meta is not None:
        for name, sig_def in meta.signature_def.items():
            out.signature_def[name].CopyFrom(sig_def)
        return out
    for name, sig in servable.signatures.items():
        sd = out.signature_def[name]
        sd.method_name = sig.method_name
        for key, spec in sig.inputs.items():
            sd.inputs[key].CopyFrom(_tensor_info(spec, meta_graph_pb2))
        for key, spec in sig.outputs.items():
            sd.outputs[key].CopyFrom(_tensor_info(spec, meta_graph_pb2))
    return out


def _serialized_examples(input_proto: Any, max_bytes: int | None = None) -> list[bytes]:
    """The request's examples serialized as TF Serving serializes them: a context's bytes are
    put before each example's; all of them within ``max_bytes``."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = list(input_proto.example_list.examples)
        context = b""
    elif kind == "example_list_with_context":
        examples = list(input_proto.example_list_with_context.examples)
        context = input_proto.example_list_with_context.context.SerializeToString()
    else:
        examples, context = [], b""
    if not examples:
        raise InvalidInputError(
            "Input is empty.", hint="put the examples in input.example_list.examples"
        )
    out = []
    total = 0
    for ex in examples:
        tfexample.check_examples_size(
            total + len(context) + ex.ByteSize(), max_bytes, len(examples)
        )
        out.append(context + ex.SerializeToString())
        total += len(out[-1])
    return out


def _method(name: str) -> tfexample.Method | None:
    return {CLASSIFY_METHOD: "classify", REGRESS_METHOD: "regress"}.get(name)  # type: ignore[return-value]


@dataclass(frozen=True)
class AdminPolicy:
    """Who may call ModelService's admin method, ``HandleReloadConfigRequest``.

    ``allowed`` turns it on; with a ``token``, a call must also carry the metadata
    ``authorization: Bearer <token>`` (what the tfserving target sends as its ``api_key``).
    """

    allowed: bool = True
    token: str | None = None

    def check(self, context: Any, method: str) -> None:
        """Raise PERMISSION_DENIED or UNAUTHENTICATED unless this call may proceed."""
        if not self.allowed:
            raise TfdeployError(
                f"{method} is turned off on this server",
                hint="a server listening beyond loopback allows it only when started with "
                "--allow-config-reload",
                code="PERMISSION_DENIED",
            )
        if self.token is None:
            return
        sent = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(str(sent).encode(), f"Bearer {self.token}".encode()):
            raise TfdeployError(
                f"{method} needs the server's admin token",
                hint="send the metadata 'authorization: Bearer <token>' (a tfserving target "
                "sends its api_key)",
                code="UNAUTHENTICATED",
            )


def _servicers(
    repository: ModelRepository,
    *,
    max_bytes: int | None = None,
    admin: AdminPolicy = AdminPolicy(),
    budget: ByteBudget | None = None,
) -> tuple[Any, Any]:
    _require_apis()
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_management_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    repo = repository
    in_flight = budget or ByteBudget(2**62)

    async def run(
        servable: Servable,
        signature: str,
        inputs: dict[str, np.ndarray],
        size: int | None,
        spec: Any,
        outputs: tuple[str, ...] | None = None,
    ) -> dict[str, np.ndarray]:
        name, version, label = _spec_target(spec)
        future = repo.submit(
            servable,
            signature,
            inputs,
            size,
            name=name,
            version=version,
            label=label,
            loop=asyncio.get_running_loop(),
            outputs=outputs,
        )
        result: dict[str, np.ndarray] = await future
        return result

    def resolve(spec: Any) -> Servable:
        name, version, label = _spec_target(spec)
        if not name:
            raise InvalidInputError(
                "ModelSpec has no name specified.", hint="name the model in model_spec.name"
            )
        return repo.resolve(name, version, label)

    def answer_spec(out: Any, request_spec: Any, servable: Servable, signature: str | None) -> None:
        """TF Serving's ``MakeModelSpec``: the request's model name, the signature (the default
        one when the request named none), the version that answered."""
        out.name = request_spec.name
        if signature is not None:
            out.signature_name = signature or DEFAULT_SIGNATURE
        out.version.value = servable.version

    async def run_examples(request: Any, method: tfexample.Method, out_spec: Any) -> Any:
        """Run a Classify or Regress request's tf.Examples; fill the answer's model_spec."""
        servable = resolve(request.model_spec)
        sig = tfexample.examples_signature(
            servable.signatures, request.model_spec.signature_name, method
        )
        key = tfexample.examples_input(sig, method)
        protos = _serialized_examples(request.input, max_bytes)
        outputs = await run(
            servable,
            sig.name,
            {key: np.array(protos, dtype=object)},
            len(protos),
            request.model_spec,
            tuple(tfexample.examples_outputs(method, sig)),
        )
        answer_spec(out_spec, request.model_spec, servable, sig.name)
        if method == "classify":
            return tfexample.classifications(outputs, len(protos))
        return tfexample.regressions(outputs, len(protos))

    def fill_classifications(out: Any, results: list[list[tuple[str, float]]]) -> None:
        for row in results:
            c = out.classifications.add()
            for label, score in row:
                c.classes.add(label=label, score=score)

    def fill_regressions(out: Any, values: list[float]) -> None:
        for value in values:
            out.regressions.add(value=value)

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
        """tensorflow.serving.PredictionService."""

        metrics = repo.metrics
        budget = in_flight

        @_rpc("Predict")
        async def Predict(self, request: Any, context: Any) -> Any:
            servable = resolve(request.model_spec)
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            sig = servable.signatures.get(name)
            if sig is None:
                raise SignatureNotFoundError(
                    f'Serving signature key "{name}" not found.',
                    code="FAILED_PRECONDITION",
                    hint=f"the model has: {', '.join(sorted(servable.signatures)) or 'none'}",
                )
            wire.check_predict_method(sig)
            inputs, size = tensors_to_inputs(request.inputs, sig, max_bytes=max_bytes)
            wanted = _output_filter(request.output_filter, sig)
            try:
                outputs = await run(servable, sig.name, inputs, size, request.model_spec, wanted)
            except PredictionError as exc:
                raise _explain_grpc(sig, inputs, exc) from exc
            response = predict_pb2.PredictResponse()
            answer_spec(response.model_spec, request.model_spec, servable, sig.name)
            for key in wanted or tuple(sig.outputs):
                fill_tensor_proto(response.outputs[key], outputs[key])
            return response

        @_rpc("Classify")
        async def Classify(self, request: Any, context: Any) -> Any:
            response = classification_pb2.ClassificationResponse()
            results = await run_examples(request, "classify", response.model_spec)
            fill_classifications(response.result, results)
            return response

        @_rpc("Regress")
        async def Regress(self, request: Any, context: Any) -> Any:
            response = regression_pb2.RegressionResponse()
            values = await run_examples(request, "regress", response.model_spec)
            fill_regressions(response.result, values)
            return response

        @_rpc("MultiInference")
        async def MultiInference(self, request: Any, context: Any) -> Any:
            first = request.tasks[0].model_spec if request.tasks else None
            if first is None:
                raise InvalidInputError(
                    "the MultiInferenceRequest has no tasks", hint="add a classify or regress task"
                )
            return await multi_inference(request, resolve(first))

        @_rpc("GetModelMetadata")
        async def GetModelMetadata(self, request: Any, context: Any) -> Any:
            if not request.HasField("model_spec"):
                raise InvalidInputError("Missing ModelSpec")
            fields = list(request.metadata_field)
            if not fields:
                raise InvalidInputError(
                    "GetModelMetadataRequest must specify at least one metadata_field",
                    hint="ask for metadata_field ['signature_def']",
                )
            for field in fields:
                if field != "signature_def":
                    raise InvalidInputError(
                        f"Metadata field {field} is not supported",
                        hint="ask for metadata_field ['signature_def'], the one served",
                    )
            servable = resolve(request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_def_map(servable))
            return response

    async def multi_inference(request: Any, servable: Servable) -> Any:
        """TF Serving's ``TensorFlowMultiInferenceRunner::Infer``: classify and regress tasks
        on one model, all reading the same input tensor, from one set of examples."""
        model_name = ""
        seen: set[str] = set()
        plans: list[tuple[Any, Signature, tfexample.Method]] = []
        input_tensor = ""
        for task in request.tasks:
            if not task.model_spec.name:
                raise InvalidInputError("Found ModelSpec with an empty model name.")
            if model_name and task.model_spec.name != model_name:
                raise InvalidInputError(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            model_name = task.model_spec.name
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise InvalidInputError(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            sig = servable.signatures.get(name)
            if sig is None:
                raise SignatureNotFoundError(
                    f"Requested signature not found in model graph: {name}",
                    hint=f"the model has: {', '.join(sorted(servable.signatures)) or 'none'}",
                )
            method = _method(task.method_name)
            if method is None:
                raise TfdeployError(
                    f"Unsupported signature method_name: {task.method_name}",
                    code="UNIMPLEMENTED",
                    hint=f"MultiInference runs {CLASSIFY_METHOD} and {REGRESS_METHOD} tasks",
                )
            key = tfexample.examples_input(sig, method)
            tensor = sig.inputs[key].tensor_name
            if input_tensor and tensor != input_tensor:
                raise InvalidInputError("Input tensor must be the same for all Signatures.")
            input_tensor = tensor
            plans.append((task, sig, method))
        if not plans:
            raise InvalidInputError(
                "the MultiInferenceRequest has no tasks", hint="add a classify or regress task"
            )
        protos = _serialized_examples(request.input)
        inputs = {"inputs": np.array(protos, dtype=object)}
        response = inference_pb2.MultiInferenceResponse()
        for task, sig, method in plans:
            outputs = await run(
                servable,
                sig.name,
                inputs,
                len(protos),
                task.model_spec,
                tuple(tfexample.examples_outputs(method, sig)),
            )
            result = response.results.add()
            answer_spec(result.model_spec, task.model_spec, servable, sig.name)
            if method == "classify":
                fill_classifications(
                    result.classification_result, tfexample.classifications(outputs, len(protos))
                )
            else:
                fill_regressions(
                    result.regression_result, tfexample.regressions(outputs, len(protos))
                )
        return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
        """tensorflow.serving.ModelService."""

        metrics = repo.metrics
        budget = in_flight

        @_rpc("GetModelStatus")
        async def GetModelStatus(self, request: Any, context: Any) -> Any:
            if not request.HasField("model_spec"):
                raise InvalidInputError(
                    "Missing ModelSpec", hint="name the model in model_spec.name"
                )
            name, version, label = _spec_target(request.model_spec)
            response = get_model_status_pb2.GetModelStatusResponse()
            state_enum = get_model_status_pb2.ModelVersionStatus.State
            for s in repo.status(name, version, label):
                entry = response.model_version_status.add(
                    version=s.version, state=state_enum.Value(s.state)
                )
                entry.status.error_code = _TF_CODES.get(s.error_code, 2)
                entry.status.error_message = s.error_message
            return response

        @_rpc("HandleReloadConfigRequest")
        async def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:
            admin.check(context, "HandleReloadConfigRequest")
            configs = configs_from_proto(request.config)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, repo.apply_config, configs)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.error_code = 0
            return response

    return PredictionService(), ModelService()


def _output_filter(names: Any, sig: Signature) -> tuple[str, ...] | None:
    """The outputs a Predict fetches: its ``output_filter``, checked as TF Serving checks it."""
    wanted: list[str] = []
    for alias in names:
        if alias not in sig.outputs:
            raise InvalidInputError(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(sig.outputs))}}}."
            )
        if alias in wanted:
            raise InvalidInputError(f"duplicate output tensor alias: {alias}")
        wanted.append(alias)
    return tuple(wanted) or None


def _explain_grpc(
    sig: Signature, inputs: Mapping[str, np.ndarray], error: PredictionError
) -> TfdeployError:
    """A model's refusal of a tensor whose shape differs from the declared one, explained."""
    bad = wire.shape_mismatches(sig, inputs)
    if not bad or error.code != "INVALID_ARGUMENT":
        return error
    reason = error.message.removeprefix("the model failed on this input: ")
    parts = [
        f"input {k!r} expects {sig.inputs[k].dtype} of shape {sig.inputs[k].shape_text()}; "
        f"got shape {list(inputs[k].shape)}"
        for k in bad
    ]
    return InvalidInputError(
        "; ".join(parts) + f" (the model refused it: {reason})", hint=wire.signature_hint(sig)
    )


class GrpcServer:
    """The gRPC server on its own thread and event loop.

    ``max_message_bytes`` bounds a request message (and what its tensors decode to), as
    ``--max-body-bytes`` bounds a REST body; ``admin`` says who may reload the config;
    ``budget`` bounds the bytes of calls in flight, shared with the REST side.
    """

    def __init__(
        self,
        repository: ModelRepository,
        host: str,
        port: int,
        *,
        max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
        admin: AdminPolicy = AdminPolicy(),
        budget: ByteBudget | None = None,
    ) -> None:
        self.repository = repository
        self.host = host
        self._requested_port = port
        self.max_message_bytes = max_message_bytes
        self.admin = admin
        self.budget = budget
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` that clients connect to."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Bind the port and start serving on a background thread."""
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        prediction, models = _servicers(
            self.repository, max_bytes=self.max_message_bytes, admin=self.admin, budget=self.budget
        )

        async def build() -> int:
            self._server = grpc.aio.server(
                interceptors=[_malformed_interceptor()],
                options=[
                    ("grpc.max_receive_message_length", self.max_message_bytes),
                    ("grpc.max_send_message_length", 256 * 1024 * 1024),
                    # grpcio sets SO_REUSEPORT by default, so a second server could share the
                    # port and answer half the calls: a port in use must fail to bind.
                    ("grpc.so_reuseport", 0),
                ],
            )
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                prediction, self._server
            )
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, self._server)
            host = f"[{self.host}]" if ":" in self.host else self.host
            try:
                port: int = self._server.add_insecure_port(f"{host}:{self._requested_port}")
            except RuntimeError:
                port = 0
            if port:
                await self._server.start()
            return port

        self.port = self._loop.run_until_complete(build())
        if not self.port:
            self._loop.close()
            raise ConfigError(
                f"cannot listen on {self.host}:{self._requested_port} for gRPC: the port is in "
                "use or the address is not available",
                hint="choose another --grpc-port (0 picks a free one)",
            )
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tfdeploy-grpc", daemon=True
        )
        self._thread.start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting calls, let running ones finish for up to ``grace`` seconds."""
        if self._server is None or self._thread is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)
        done.result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._server = None
