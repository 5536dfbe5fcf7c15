"""Talking to a TF Serving server: gRPC (PredictionService, ModelService) and REST.

The gRPC messages come from :mod:`tfdeploy_tfserving.protos`, so no call here imports
TensorFlow. gRPC statuses become tfdeploy errors through :func:`tfdeploy.plugin.from_grpc_status`
(``UNAVAILABLE`` and friends are retryable); REST calls go through
:func:`tfdeploy.plugin.request_json`, which maps HTTP statuses the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from tfdeploy.plugin import (
    DTYPE_FOR_NUMPY,
    DTYPE_NAMES,
    DTYPE_NUMBERS,
    NUMPY_DTYPES,
    PredictionError,
    Signature,
    TargetError,
    TensorSpec,
    from_connection_error,
    from_grpc_status,
    time_left,
)
from tfdeploy_tfserving import protos

if TYPE_CHECKING:
    import numpy as np

#: The TensorProto field holding values of each numpy dtype when ``tensor_content`` is empty.
_VALUE_FIELDS = {
    "float32": "float_val",
    "float64": "double_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
}


# --- tensors -------------------------------------------------------------------------------


def to_tensor(array: np.ndarray) -> Any:
    """A ``tensorflow.TensorProto`` holding ``array``."""
    import numpy as np

    tensor = protos.TensorProto()
    kind = "object" if array.dtype.kind in "OSU" else array.dtype.name
    if kind not in DTYPE_FOR_NUMPY:
        raise PredictionError(f"cannot send a {array.dtype} array over gRPC")
    tensor.dtype = DTYPE_NUMBERS[DTYPE_FOR_NUMPY[kind]]
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=size)
    if kind == "object":
        tensor.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1).tolist()
        )
    else:
        tensor.tensor_content = np.ascontiguousarray(
            array, dtype=array.dtype.newbyteorder("<")
        ).tobytes()
    return tensor


def from_tensor(tensor: Any) -> np.ndarray:
    """The numpy array a ``tensorflow.TensorProto`` holds."""
    import numpy as np

    name = NUMPY_DTYPES.get(DTYPE_NAMES.get(tensor.dtype, ""))
    if name is None or tensor.dtype == DTYPE_NUMBERS["DT_BFLOAT16"]:
        raise PredictionError(
            f"the server answered with a {DTYPE_NAMES.get(tensor.dtype, tensor.dtype)} tensor"
        )
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    count = int(np.prod(shape)) if shape else 1
    if name == "object":
        values: Any = list(tensor.string_val)
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif tensor.tensor_content:
        array = np.frombuffer(tensor.tensor_content, dtype=np.dtype(name).newbyteorder("<")).astype(
            name
        )
    elif name == "float16":
        array = np.asarray(tensor.half_val, dtype=np.uint16).view(np.float16)
    else:
        field = _VALUE_FIELDS.get(name, "int_val")
        array = np.asarray(getattr(tensor, field), dtype=name)
    if array.size == 1 and count != 1:
        array = np.full(count, array.reshape(-1)[0], dtype=array.dtype)
    return array.reshape(shape)


def signature_from_proto(name: str, sig: Any) -> Signature:
    """A tfdeploy :class:`Signature` from a ``tensorflow.SignatureDef`` message."""

    def spec(key: str, info: Any) -> TensorSpec:
        shape = (
            None
            if info.tensor_shape.unknown_rank
            else tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
        )
        dtype = DTYPE_NAMES.get(info.dtype, f"DT_UNKNOWN_{info.dtype}")
        return TensorSpec(key=key, tensor_name=info.name, dtype=dtype, shape=shape)

    return Signature(
        name=name,
        inputs={k: spec(k, v) for k, v in sorted(sig.inputs.items())},
        outputs={k: spec(k, v) for k, v in sorted(sig.outputs.items())},
        method_name=sig.method_name,
    )


# --- gRPC ----------------------------------------------------------------------------------


class GrpcClient:
    """One channel to a server's PredictionService and ModelService."""

    def __init__(
        self, address: str, *, metadata: Sequence[tuple[str, str]] = (), timeout: float = 30.0
    ) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.metadata = tuple(metadata)
        self.timeout = timeout

    def _call(self, method: str, request: Any, response_class: Any, what: str) -> Any:
        stub = self.channel.unary_unary(
            method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        timeout = time_left(self.timeout)
        if timeout <= 0:
            raise from_connection_error(
                f"{self.address} (gRPC {what})", "no time left", timed_out=True
            )
        try:
            return stub(request, timeout=timeout, metadata=self.metadata or None)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            where = f"{what} at {self.address}"
            if code == grpc.StatusCode.UNAVAILABLE and _unreachable(detail):
                raise from_connection_error(f"{self.address} (gRPC {what})", detail) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise from_connection_error(
                    f"{self.address} (gRPC {what})",
                    f"no answer within {timeout:.3g} s",
                    timed_out=True,
                ) from None
            name = code.name if code is not None else "UNKNOWN"
            raise from_grpc_status(name, f"{where}: {name}: {detail}") from None

    def model_status(self, model: str) -> list[tuple[int, str, str]]:
        """``(version, state, error message)`` for every version the server knows of ``model``."""
        request = protos.GetModelStatusRequest()
        request.model_spec.name = model
        response = self._call(
            protos.GET_MODEL_STATUS, request, protos.GetModelStatusResponse, "GetModelStatus"
        )
        return [
            (s.version, protos.VERSION_STATES.get(s.state, str(s.state)), s.status.error_message)
            for s in response.model_version_status
        ]

    def reload_config(self, config: Any) -> None:
        """Ask the server to apply a whole ``ModelServerConfig``."""
        request = protos.ReloadConfigRequest()
        request.config.CopyFrom(config)
        response = self._call(
            protos.RELOAD_CONFIG, request, protos.ReloadConfigResponse, "HandleReloadConfigRequest"
        )
        if response.status.error_code:
            raise TargetError(
                f"the server refused the new model config: {response.status.error_message}"
            )

    def signatures(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> dict[str, Signature]:
        """The model's signatures, from GetModelMetadata."""
        request = protos.GetModelMetadataRequest()
        _spec(request.model_spec, model, version, label)
        request.metadata_field.append("signature_def")
        response = self._call(
            protos.GET_MODEL_METADATA, request, protos.GetModelMetadataResponse, "GetModelMetadata"
        )
        packed = response.metadata.get("signature_def")
        if packed is None:
            raise TargetError(f"the server at {self.address} sent no signatures for {model}")
        sig_map = protos.SignatureDefMap.FromString(packed.value)
        return {
            name: signature_from_proto(name, sig)
            for name, sig in sig_map.signature_def.items()
            if name != "__saved_model_init_op"
        }

    def predict(
        self,
        model: str,
        body: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Answer a contract request through PredictionService.Predict."""
        from tfdeploy.plugin import wire

        prepared = wire.prepare(body, self.signatures(model, version=version, label=label))
        request = protos.PredictRequest()
        _spec(request.model_spec, model, version, label)
        request.model_spec.signature_name = prepared.signature.name
        for key, array in prepared.inputs.items():
            request.inputs[key].CopyFrom(to_tensor(array))
        response = self._call(protos.PREDICT, request, protos.PredictResponse, "Predict")
        outputs = {k: from_tensor(v) for k, v in sorted(response.outputs.items())}
        return wire.answer(outputs, prepared.format)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def _spec(spec: Any, model: str, version: int | None, label: str | None) -> None:
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label:
        spec.version_label = label


def _unreachable(detail: str) -> bool:
    """Whether a gRPC ``UNAVAILABLE`` says the server could not be reached at all."""
    text = detail.lower()
    return any(
        sign in text
        for sign in ("connection refused", "failed to connect", "dns resolution", "name resolution")
    )
