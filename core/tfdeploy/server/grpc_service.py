"""TF Serving's gRPC API over a :class:`ModelRepository`: PredictionService and ModelService.

Uses the servicer base classes and messages that ``tensorflow-serving-api`` generates, so its
stubs (``prediction_service_pb2_grpc.PredictionServiceStub``...) work unchanged. Tensors are
converted with ``tf.make_ndarray`` and ``tf.make_tensor_proto``. The server runs on its own
thread and event loop (``grpc.aio``) and shares the REST server's batchers.
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
    TfdeployError,
)
from tfdeploy.model.signatures import (
    DTYPE_NAMES,
    DTYPE_NUMBERS,
    NUMPY_DTYPES,
    Signature,
    TensorSpec,
)
from tfdeploy.predict import _tf, tfexample, wire
from tfdeploy.server import tensor_checks
from tfdeploy.server.limits import DEFAULT_MAX_BODY_BYTES, ByteBudget
from tfdeploy.server.repository import ModelRepository, Servable, configs_from_proto
from tfdeploy.server.rest import examples_input

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


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...] | None) -> bool:
    if expected is None:
        return True
    return len(shape) == len(expected) and all(
        e is None or e == a for e, a in zip(expected, shape, strict=True)
    )


def tensors_to_inputs(
    tensors: Mapping[str, Any], signature: Signature, *, max_bytes: int | None = None
) -> tuple[dict[str, np.ndarray], int | None]:
    """Convert a request's TensorProtos into arrays checked against ``signature``.

    Each tensor's values are checked against its own declared shape, and the arrays they
    decode to against ``max_bytes`` in all, before any is decoded
    (:mod:`tfdeploy.server.tensor_checks`). Returns the arrays and the batch size shared by
    every input (``None`` when they share none, and the request must run alone).
    """
    tf = _tf.tensorflow()
    given, expected = set(tensors), set(signature.inputs)
    if given != expected:
        missing, unknown = sorted(expected - given), sorted(given - expected)
        parts = [f"missing inputs {missing}"] if missing else []
        parts += [f"unknown inputs {unknown}"] if unknown else []
        raise InvalidInputError(
            f"signature {signature.name!r}: " + "; ".join(parts),
            hint=f"it takes inputs {sorted(expected)}",
        )
    arrays: dict[str, np.ndarray] = {}
    for key, spec in signature.inputs.items():
        proto = tensors[key]
        got = DTYPE_NAMES.get(proto.dtype, str(proto.dtype))
        if got != spec.dtype:
            raise InvalidInputError(f"input {key!r} expects {spec.dtype}; got {got}")
    total = sum(tensor_checks.decoded_bytes(tensors[key], key) for key in signature.inputs)
    if max_bytes is not None:
        tensor_checks.check_request_size(total, max_bytes)
    for key, spec in signature.inputs.items():
        proto = tensors[key]
        try:
            arr = _fast_ndarray(proto, spec)
            if arr is None:
                arr = tf.make_ndarray(proto)
        except Exception as exc:
            raise InvalidInputError(f"input {key!r} is not a valid TensorProto: {exc}") from exc
        if not _fits(arr.shape, spec.shape):
            raise InvalidInputError(
                f"input {key!r} expects shape {spec.shape_text()}; got {list(arr.shape)}"
            )
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


def fill_tensor_proto(out: Any, arr: np.ndarray) -> None:
    """Write ``arr`` into the TensorProto ``out``: raw content for numbers, else TensorFlow's way."""
    name = _NUMPY_TO_DT.get(arr.dtype.str)
    if name is None:
        out.CopyFrom(_tf.tensorflow().make_tensor_proto(arr))
        return
    out.dtype = DTYPE_NUMBERS[name]
    for d in arr.shape:
        out.tensor_shape.dim.add(size=d)
    out.tensor_content = np.ascontiguousarray(arr).tobytes()


_NUMPY_TO_DT = {dtype.str: name for name, dtype in _RAW_DTYPES.items() if dtype.byteorder != ">"}


def _tensor_info(spec: TensorSpec, meta_graph_pb2: Any) -> Any:
    info = meta_graph_pb2.TensorInfo(name=spec.tensor_name, dtype=DTYPE_NUMBERS.get(spec.dtype, 0))
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
    else:
        for d in spec.shape:
            info.tensor_shape.dim.add(size=-1 if d is None else d)
    return info


def signature_def_map(signatures: Mapping[str, Signature]) -> Any:
    """A ``SignatureDefMap`` message for a servable's signatures."""
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    out = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in signatures.items():
        sd = out.signature_def[name]
        sd.method_name = sig.method_name
        for key, spec in sig.inputs.items():
            sd.inputs[key].CopyFrom(_tensor_info(spec, meta_graph_pb2))
        for key, spec in sig.outputs.items():
            sd.outputs[key].CopyFrom(_tensor_info(spec, meta_graph_pb2))
    return out


def _serialized_examples(input_proto: Any, max_bytes: int | None = None) -> list[bytes]:
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = list(input_proto.example_list.examples)
        context = None
    elif kind == "example_list_with_context":
        examples = list(input_proto.example_list_with_context.examples)
        context = input_proto.example_list_with_context.context
    else:
        raise InvalidInputError("the request's input holds no examples")
    if not examples:
        raise InvalidInputError("the request's input holds no examples")
    out = []
    total = 0
    per_context = context.ByteSize() if context is not None else 0
    for ex in examples:
        tfexample.check_examples_size(total + per_context + ex.ByteSize(), max_bytes, len(examples))
        if context is not None:
            merged = type(ex)()
            merged.CopyFrom(context)
            merged.MergeFrom(ex)
            ex = merged
        out.append(ex.SerializeToString())
        total += len(out[-1])
    return out


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
        )
        outputs: dict[str, np.ndarray] = await future
        return outputs

    def resolve(spec: Any) -> Servable:
        name, version, label = _spec_target(spec)
        if not name:
            raise InvalidInputError("model_spec.name is empty")
        return repo.resolve(name, version, label)

    def answer_spec(out: Any, servable: Servable, signature: str) -> None:
        out.name = servable.name
        out.version.value = servable.version
        out.signature_name = signature

    async def run_examples(request: Any, kind: str, out_spec: Any) -> dict[str, np.ndarray]:
        """Run a Classify or Regress request's tf.Examples; fill the answer's model_spec."""
        servable = resolve(request.model_spec)
        sig = wire.select_signature(servable.signatures, request.model_spec.signature_name or None)
        key = examples_input(sig, kind)
        protos = _serialized_examples(request.input, max_bytes)
        inputs = {key: np.array(protos, dtype=object)}
        outputs = await run(servable, sig.name, inputs, len(protos), request.model_spec)
        answer_spec(out_spec, servable, sig.name)
        return outputs

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
        """tensorflow.serving.PredictionService."""

        metrics = repo.metrics
        budget = in_flight

        @_rpc("Predict")
        async def Predict(self, request: Any, context: Any) -> Any:
            servable = resolve(request.model_spec)
            sig = wire.select_signature(
                servable.signatures, request.model_spec.signature_name or None
            )
            inputs, size = tensors_to_inputs(request.inputs, sig, max_bytes=max_bytes)
            outputs = await run(servable, sig.name, inputs, size, request.model_spec)
            wanted = list(request.output_filter) or list(outputs)
            unknown = [k for k in wanted if k not in outputs]
            if unknown:
                raise InvalidInputError(f"output_filter names unknown outputs {unknown}")
            response = predict_pb2.PredictResponse()
            answer_spec(response.model_spec, servable, sig.name)
            for key in wanted:
                fill_tensor_proto(response.outputs[key], outputs[key])
            return response

        @_rpc("Classify")
        async def Classify(self, request: Any, context: Any) -> Any:
            response = classification_pb2.ClassificationResponse()
            outputs = await run_examples(request, "classify", response.model_spec)
            for row in tfexample.classify_results(outputs):
                c = response.result.classifications.add()
                for label, score in row:
                    c.classes.add(label=label, score=score)
            return response

        @_rpc("Regress")
        async def Regress(self, request: Any, context: Any) -> Any:
            response = regression_pb2.RegressionResponse()
            outputs = await run_examples(request, "regress", response.model_spec)
            for value in tfexample.regress_results(outputs):
                response.result.regressions.add(value=value)
            return response

        @_rpc("GetModelMetadata")
        async def GetModelMetadata(self, request: Any, context: Any) -> Any:
            servable = resolve(request.model_spec)
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise InvalidInputError(
                    "metadata_field must be exactly ['signature_def'] (the only metadata served)"
                )
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            answer_spec(response.model_spec, servable, "")
            response.metadata["signature_def"].Pack(signature_def_map(servable.signatures))
            return response

        async def MultiInference(self, request: Any, context: Any) -> Any:
            """Not offered: answers UNIMPLEMENTED."""
            import grpc

            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported")

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
        """tensorflow.serving.ModelService."""

        metrics = repo.metrics
        budget = in_flight

        @_rpc("GetModelStatus")
        async def GetModelStatus(self, request: Any, context: Any) -> Any:
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
