"""Slow and greedy clients: header and body deadlines, idle connections, a cap on open
connections, and a bound on the bytes of requests in flight (REST and gRPC together)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy.cli import main
from tfdeploy.server import ServerHandle, serve_savedmodel
from tfdeploy.server.limits import ServerLimits

pytestmark = pytest.mark.slow

SHORT = ServerLimits(
    header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=1, max_connections=100
)


@pytest.fixture(scope="module")
def quick(digits_savedmodel: Path) -> Iterator[ServerHandle]:
    """A server with short deadlines."""
    handle = serve_savedmodel(digits_savedmodel, port=0, background=True, quiet=True, limits=SHORT)
    assert handle is not None
    yield handle
    handle.stop()


def connect(handle: ServerHandle) -> socket.socket:
    return socket.create_connection(("127.0.0.1", handle.port), timeout=15)


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:  # the server never closed: the test fails on what it got
            return data + b"<still open>", time.monotonic() - started
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def test_headers_that_never_complete_get_408_and_the_connection_closes(quick: ServerHandle) -> None:
    for partial in (b"", b"POST /serving_default/predict HTTP/1.1\r\nHost: x\r\n"):
        with connect(quick) as sock:
            sock.sendall(partial)
            data, _ = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 408"), data
        assert b"headers" in data and b"<still open>" not in data


def test_headers_trickled_in_byte_by_byte_still_get_408(quick: ServerHandle) -> None:
    with connect(quick) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: a\r\n" * 50
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data


@pytest.mark.parametrize("sent", [0, 100, 999])
def test_a_body_that_stalls_gets_408_and_the_connection_closes(
    quick: ServerHandle, sent: int
) -> None:
    with connect(quick) as sock:
        sock.sendall(
            b"POST /serving_default/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            + b"[" * sent
        )
        data, _ = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data
    assert b"connection: close" in head.lower()
    assert f"{sent} bytes came".encode() in body


def test_a_body_dripping_in_slowly_gets_408(quick: ServerHandle) -> None:
    with connect(quick) as sock:
        sock.sendall(b"POST /_noop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(40):  # one byte every 50 ms: 2 s in all, the deadline is 0.5 s
                sock.sendall(b"1\r\n[\r\n")
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data


def test_an_idle_keep_alive_connection_is_closed_and_requests_in_time_are_served(
    quick: ServerHandle,
) -> None:
    with connect(quick) as sock:
        for _ in range(3):  # keep-alive: several requests on one connection
            sock.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            time.sleep(0.2)
        data, _ = read_until_closed(sock)
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data


def test_open_connections_are_capped(digits_savedmodel: Path) -> None:
    limits = ServerLimits(header_timeout=30, max_connections=3)
    handle = serve_savedmodel(digits_savedmodel, port=0, background=True, quiet=True, limits=limits)
    assert handle is not None
    try:
        idle = [connect(handle) for _ in range(3)]
        time.sleep(0.2)
        with connect(handle) as extra:
            data, _ = read_until_closed(extra)
        assert data.startswith(b"HTTP/1.1 503"), data
        assert b"open connections" in data
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert http("GET", handle.url + "/healthz")[0] == 200
    finally:
        handle.stop()


def test_bytes_in_flight_are_bounded_across_rest_and_grpc(digits_savedmodel: Path) -> None:
    limits = ServerLimits(max_inflight_bytes=2_000_000, body_timeout=30)
    handle = serve_savedmodel(
        digits_savedmodel,
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
        max_body_bytes=1_000_000,
        limits=limits,
    )
    assert handle is not None
    body = json.dumps({"instances": [[0.25] * 64] * 2400}).encode()
    assert 900_000 < len(body) < 1_000_000
    try:
        stalled = []
        for _ in range(2):  # two large bodies announced and half sent: 1.9 MB in flight
            sock = connect(handle)
            sock.sendall(
                b"POST /serving_default/predict HTTP/1.1\r\nHost: x\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            stalled.append(sock)
        time.sleep(0.3)
        status, answer = http("POST", handle.url + "/serving_default/predict", raw=body)
        assert status == 503 and "in flight" in answer["error"], answer
        # A chunked body counts as it arrives, and is refused once it would go over; the rest
        # of it is read and dropped, so the client gets to read the 503.
        with connect(handle) as sock:
            sock.sendall(
                b"POST /_noop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n" % (200_000, b" " * 200_000) * 3
                + b"0\r\n\r\n"
            )
            data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 503"), data[:200]
        # gRPC calls share the budget.
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        from tfdeploy.predict import _tf

        tf = _tf.tensorflow()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "default"
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1000, 64), np.float32)))
        assert handle.grpc_address
        with grpc.insecure_channel(handle.grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            metrics = http("GET", handle.url + "/metrics")[1]
            assert "tfdeploy_inflight_bytes 1.85" in metrics  # the two stalled bodies
            # Once the stalled bodies complete and are answered, the bytes are free again.
            for sock in stalled:
                sock.sendall(body[len(body) // 2 :])
            for sock in stalled:
                answer_head = sock.recv(200)
                assert answer_head.startswith(b"HTTP/1.1 200"), answer_head
                sock.close()
            time.sleep(0.2)
            answer_shape = stub.Predict(request, timeout=30).outputs["prediction"].tensor_shape
            assert answer_shape.dim[0].size == 1000
        status, answer = http("POST", handle.url + "/serving_default/predict", raw=body)
        assert status == 200 and len(answer["predictions"]) == 2400
    finally:
        handle.stop()


def test_serve_options_document_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        main(["serve", "--help"])
    except SystemExit as exc:
        assert not exc.code
    text = capsys.readouterr().out
    for option in (
        "--header-timeout",
        "--body-timeout",
        "--keep-alive-timeout",
        "--max-connections",
        "--max-inflight-bytes",
        "--allow-config-reload",
        "--admin-token",
    ):
        assert option in text
    defaults = ServerLimits()
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 30.0)
    assert defaults.max_connections == 1000


def test_limits_that_cannot_work_are_a_config_error(digits_savedmodel: Path) -> None:
    from tfdeploy.errors import ConfigError

    with pytest.raises(ConfigError, match="in-flight"):
        serve_savedmodel(
            digits_savedmodel,
            port=0,
            background=True,
            quiet=True,
            max_body_bytes=1000,
            limits=ServerLimits(max_inflight_bytes=500),
        )
