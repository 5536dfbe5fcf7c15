"""The gRPC API against hostile clients: a port in use, tensors whose values do not fit their
own shape, oversized messages, and config reloads from the network."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy.errors import ConfigError
from tfdeploy.predict import _tf
from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow

tf = _tf.tensorflow()
from tensorflow_serving.apis import (  # noqa: E402  (TensorFlow first, quietly)
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

LIMIT = 1_000_000


@pytest.fixture(scope="module")
def server(digits_savedmodel: Path) -> Iterator[ServerHandle]:
    handle = serve_savedmodel(
        digits_savedmodel,
        model_name="digits",
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
        max_body_bytes=LIMIT,
    )
    assert handle is not None
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def stub(server: ServerHandle) -> Iterator[Any]:
    assert server.grpc_address
    with grpc.insecure_channel(
        server.grpc_address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict(stub: Any, tensor: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["image"].CopyFrom(tensor)
    return stub.Predict(request, timeout=30)


def tensor(dims: list[int], **fields: Any) -> Any:
    proto = tf.make_tensor_proto(np.zeros((0,), np.float32))
    proto.ClearField("tensor_shape")
    proto.ClearField("tensor_content")
    for d in dims:
        proto.tensor_shape.dim.add(size=d)
    for name, values in fields.items():
        if name == "tensor_content":
            proto.tensor_content = values
        else:
            getattr(proto, name).extend(values)
    return proto


@pytest.mark.parametrize(
    ("dims", "fields", "needle"),
    [
        ([1_000_000, 64], {"float_val": [1.0]}, "more than this server accepts"),
        ([2**40, 2**40], {"float_val": [1.0]}, "more than this server accepts"),
        ([3, 64], {"float_val": [1.0] * 64}, "holds 64"),
        ([1, 64], {"float_val": [1.0] * 65}, "holds 65"),
        ([1, 64], {"float_val": []}, "holds 0"),
        ([1, 64], {"tensor_content": b"\x00" * 255}, "255 bytes"),
        ([100_000, 64], {"tensor_content": b"\x00" * 256}, "256 bytes"),
        ([-1, 64], {"float_val": [1.0]}, "negative"),
        ([1, 64], {"int_val": [1] * 64}, "int_val"),
        ([1, 64], {"tensor_content": b"\x00" * 256, "float_val": [1.0]}, "both"),
        ([1] * 70, {"float_val": [1.0]}, "dimensions"),
    ],
)
def test_a_tensor_that_does_not_fit_its_shape_is_invalid_argument(
    server: ServerHandle, stub: Any, dims: list[int], fields: dict[str, Any], needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        predict(stub, tensor(dims, **fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert needle in err.value.details()
    # The server keeps serving; one value for the whole shape is TF's broadcast and works.
    out = predict(stub, tensor([2, 64], float_val=[0.5]))
    assert tf.make_ndarray(out.outputs["prediction"]).shape == (2, 10)


def test_an_unknown_rank_tensor_is_invalid_argument(stub: Any) -> None:
    proto = tensor([1, 64], float_val=[1.0] * 64)
    proto.tensor_shape.unknown_rank = True
    with pytest.raises(grpc.RpcError) as err:
        predict(stub, proto)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_message_over_the_body_limit_is_refused_as_for_rest(stub: Any) -> None:
    big = tf.make_tensor_proto(np.zeros((LIMIT // 256 + 100, 64), np.float32))
    with pytest.raises(grpc.RpcError) as err:
        predict(stub, big)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    fits = tf.make_tensor_proto(np.zeros((LIMIT // 256 - 100, 64), np.float32))
    assert tf.make_ndarray(predict(stub, fits).outputs["prediction"]).shape[0] > 3000


def test_a_grpc_port_in_use_is_an_error_at_start_up(
    server: ServerHandle, digits_savedmodel: Path
) -> None:
    assert server.grpc_address
    port = int(server.grpc_address.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port} for gRPC"):
        serve_savedmodel(digits_savedmodel, port=0, grpc_port=port, background=True, quiet=True)
    # Nor may it share a port that another gRPC server (SO_REUSEPORT on, grpcio's default) holds.

    async def foreign() -> tuple[Any, int]:
        s = grpc.aio.server()
        p = s.add_insecure_port("127.0.0.1:0")
        await s.start()
        return s, p

    loop = asyncio.new_event_loop()
    try:
        foreign_server, foreign_port = loop.run_until_complete(foreign())
        with pytest.raises(ConfigError, match="gRPC"):
            serve_savedmodel(
                digits_savedmodel, port=0, grpc_port=foreign_port, background=True, quiet=True
            )
        loop.run_until_complete(foreign_server.stop(0))
    finally:
        loop.close()
    # The REST port is checked the same way, and nothing stays bound after a failed start.
    with pytest.raises(ConfigError, match="cannot listen"):
        serve_savedmodel(digits_savedmodel, port=server.port, background=True, quiet=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))


def reload_request(base: Path) -> Any:
    config = model_server_config_pb2.ModelServerConfig()
    c = config.model_config_list.config.add()
    c.name, c.base_path, c.model_platform = "default", str(base), "tensorflow"
    return model_management_pb2.ReloadConfigRequest(config=config)


def test_config_reload_is_off_beyond_loopback_unless_allowed_and_can_need_a_token(
    tmp_path: Path, digits_savedmodel: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(digits_savedmodel, base / "1")
    request = reload_request(base)

    def call(handle: ServerHandle, metadata: Any = None) -> Any:
        assert handle.grpc_address
        port = handle.grpc_address.rsplit(":", 1)[1]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            return stub.HandleReloadConfigRequest(request, timeout=60, metadata=metadata)

    common: dict[str, Any] = {"port": 0, "grpc_port": 0, "background": True, "quiet": True}
    wide = serve_savedmodel(digits_savedmodel, host="0.0.0.0", **common)
    assert wide is not None
    try:
        with pytest.raises(grpc.RpcError) as err:
            call(wide)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "--allow-config-reload" in err.value.details()
    finally:
        wide.stop()

    allowed = serve_savedmodel(
        digits_savedmodel, host="0.0.0.0", allow_config_reload=True, admin_token="t0ken", **common
    )
    assert allowed is not None
    try:
        for metadata in (None, [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as err:
                call(allowed, metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "t0ken" not in err.value.details()
        assert call(allowed, [("authorization", "Bearer t0ken")]).status.error_code == 0
    finally:
        allowed.stop()

    local = serve_savedmodel(digits_savedmodel, **common)
    assert local is not None
    try:
        assert call(local).status.error_code == 0  # loopback: on by default
    finally:
        local.stop()
    closed = serve_savedmodel(digits_savedmodel, allow_config_reload=False, **common)
    assert closed is not None
    try:
        with pytest.raises(grpc.RpcError) as err:
            call(closed)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        closed.stop()


def test_a_message_that_does_not_parse_is_invalid_argument(server: ServerHandle) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "XX"
    bad_utf8 = request.SerializeToString().replace(b"XX", b"\xed\xa0")
    assert server.grpc_address
    with grpc.insecure_channel(server.grpc_address) as channel:
        for method in ("PredictionService/Predict", "PredictionService/Classify"):
            call = channel.unary_unary(
                f"/tensorflow.serving.{method}",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            for raw in (bad_utf8, b"\xff\xff\xff\xff"):
                with pytest.raises(grpc.RpcError) as err:
                    call(raw, timeout=30)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
                assert "not a valid message" in err.value.details()


def test_a_context_repeated_in_many_examples_is_bounded(examples_savedmodel: Path) -> None:
    from tensorflow_serving.apis import classification_pb2

    handle = serve_savedmodel(
        examples_savedmodel,
        model_name="examples",
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
        max_body_bytes=200_000,
    )
    assert handle is not None and handle.grpc_address
    try:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "examples"
        listed = request.input.example_list_with_context
        listed.context.features.feature["pad"].bytes_list.value.append(b"x" * 100_000)
        for _ in range(5_000):  # 5,000 copies of a 100 kB context: 500 MB from a 110 kB message
            listed.examples.add().features.feature["x"].float_list.value.append(0.5)
        with grpc.insecure_channel(handle.grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Classify(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "context" in err.value.details()
        body = {
            "context": {"pad": "x" * 100_000},
            "examples": [{"x": 0.5}] * 5_000,
        }
        status, answer = http("POST", handle.url + "/v1/models/examples:classify", body)
        assert status == 400 and "context" in answer["error"], answer
        small = {"context": {"pad": "x"}, "examples": [{"x": 0.5}] * 3}
        status, answer = http("POST", handle.url + "/v1/models/examples:classify", small)
        assert status == 200 and len(answer["results"]) == 3
    finally:
        handle.stop()
