"""Talking to a TF Serving server: gRPC (PredictionService, ModelService) and REST.

The gRPC messages come from :mod:`tfdeploy_tfserving.protos`, so no call here imports
TensorFlow. Connection failures and ``UNAVAILABLE`` become
:class:`~tfdeploy.errors.TransientError`, which callers retry.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from tfdeploy.errors import (
    PredictionError,
    RemoteError,
    ServableNotFoundError,
    TargetError,
    TransientError,
)
from tfdeploy.signatures import DTYPE_NAMES, Signature, TensorSpec
from tfdeploy_tfserving import protos

if TYPE_CHECKING:
    import numpy as np

#: TensorFlow DataType numbers of the numpy dtypes a request can hold.
DTYPE_NUMBERS = {
    "float32": 1,
    "float64": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 5,
    "int8": 6,
    "object": 7,
    "int64": 9,
    "bool": 10,
    "uint16": 17,
    "float16": 19,
    "uint32": 22,
    "uint64": 23,
}
_NUMPY_BY_NUMBER = {v: k for k, v in DTYPE_NUMBERS.items()}
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


# --- tensors -------------------------------------------------------------------------------


def to_tensor(array: np.ndarray) -> Any:
    """A ``tensorflow.TensorProto`` holding ``array``."""
    import numpy as np

    tensor = protos.TensorProto()
    kind = "object" if array.dtype.kind in "OSU" else array.dtype.name
    if kind not in DTYPE_NUMBERS:
        raise PredictionError(f"cannot send a {array.dtype} array over gRPC")
    tensor.dtype = DTYPE_NUMBERS[kind]
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

    name = _NUMPY_BY_NUMBER.get(tensor.dtype)
    if name is None:
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
        field = {
            "float32": "float_val",
            "float64": "double_val",
            "int64": "int64_val",
            "bool": "bool_val",
            "uint32": "uint32_val",
            "uint64": "uint64_val",
        }.get(name, "int_val")
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
        try:
            return stub(request, timeout=self.timeout, metadata=self.metadata or None)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            message = f"{what} at {self.address}: {code.name if code else 'error'}: {detail}"
            if code in _TRANSIENT:
                raise TransientError(message, hint="check that the server is running") from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise ServableNotFoundError(message) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise PredictionError(message) from None
            raise TargetError(message) from None

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
        from tfdeploy import contract

        prepared = contract.prepare(body, self.signatures(model, version=version, label=label))
        request = protos.PredictRequest()
        _spec(request.model_spec, model, version, label)
        request.model_spec.signature_name = prepared.signature.name
        for key, array in prepared.inputs.items():
            request.inputs[key].CopyFrom(to_tensor(array))
        response = self._call(protos.PREDICT, request, protos.PredictResponse, "Predict")
        outputs = {k: from_tensor(v) for k, v in sorted(response.outputs.items())}
        return contract.answer(outputs, prepared.format, prepared.batch_size)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def _spec(spec: Any, model: str, version: int | None, label: str | None) -> None:
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label:
        spec.version_label = label


# --- REST ----------------------------------------------------------------------------------


def rest_request(
    url: str,
    body: Any | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Any:
    """GET (or POST ``body``) a TF Serving REST URL and decode the JSON answer."""
    from tfdeploy import contract

    data = contract.dumps(body) if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST" if data is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return contract.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace")[:500]
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(json.loads(detail).get("error", detail))
        if exc.code >= 500:
            raise TransientError(f"{url} answered {exc.code}: {detail}") from None
        if exc.code == 404:
            raise ServableNotFoundError(f"{url} answered 404: {detail}") from None
        raise RemoteError(f"{url} answered {exc.code}: {detail}", status=exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransientError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
