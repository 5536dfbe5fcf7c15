"""The REST API: R tfdeploy routes, TF Serving routes, errors, batching and operations.

One server holds several models through a TF Serving model config file.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy.predict.runtime import LoadedModel
from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    digits_savedmodel: Path,
    multi_savedmodel: Path,
    strings_savedmodel: Path,
    examples_savedmodel: Path,
) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("models")
    for name, src, versions in [
        ("digits", digits_savedmodel, (1, 2)),
        ("multi", multi_savedmodel, (1,)),
        ("strings", strings_savedmodel, (1,)),
        ("examples", examples_savedmodel, (1,)),
    ]:
        for v in versions:
            shutil.copytree(src, root / name / str(v))
    config = root / "models.config"
    config.write_text(
        """
model_config_list {
  config { name: 'digits' base_path: 'digits' model_platform: 'tensorflow'
           model_version_policy { all {} }
           version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 } }
  config { name: 'multi' base_path: 'multi' model_platform: 'tensorflow' }
  config { name: 'strings' base_path: 'strings' }
  config { name: 'examples' base_path: 'examples' }
}
"""
    )
    handle = serve_savedmodel(
        model_config_file=config, port=0, background=True, quiet=True, max_body_bytes=200_000
    )
    assert handle is not None
    yield handle
    handle.stop()


def test_r_route_predicts_like_the_loaded_model_in_the_r_packages_format(
    server: ServerHandle, digits_model: LoadedModel, digits_instances: list[Any]
) -> None:
    expected = digits_model.predict({"instances": digits_instances})
    for path in ("/serving_default/predict", "/serving_default/predict/"):
        status, body = http("POST", server.url + path, {"instances": digits_instances})
        assert status == 200
        # Every output keyed by its name, one object per instance, also for one output.
        assert [set(p) for p in body["predictions"]] == [{"prediction"}] * 5
        got = [p["prediction"] for p in body["predictions"]]
        assert np.allclose(got, expected["predictions"], atol=1e-6)


def test_signature_name_in_body_wins_over_path(server: ServerHandle) -> None:
    status, body = http(
        "POST",
        server.url + "/nonexistent/predict",
        {"instances": [[0.0] * 64], "signature_name": "serving_default"},
    )
    assert status == 200 and len(body["predictions"]) == 1
    status, body = http("POST", server.url + "/nonexistent/predict", {"instances": [[0.0] * 64]})
    # As in the R package: an unknown signature on its route is a 404 listing the signatures.
    assert status == 404
    assert body["error"].startswith(
        "Signature 'nonexistent' not available in model signatures. Available signatures: "
        "serving_default."
    )


def test_tf_serving_status_versions_and_labels(server: ServerHandle) -> None:
    status, body = http("GET", server.url + "/v1/models/digits")
    assert status == 200
    assert body["model_version_status"] == [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in ("2", "1")
    ]
    status, body = http("GET", server.url + "/v1/models/digits/labels/stable")
    assert [s["version"] for s in body["model_version_status"]] == ["1"]
    status, body = http("GET", server.url + "/v1/models/digits/versions/2")
    assert [s["version"] for s in body["model_version_status"]] == ["2"]
    status, body = http("GET", server.url + "/v1/models/half")
    assert status == 404 and "half" in body["error"]


def test_tf_serving_metadata(server: ServerHandle) -> None:
    status, body = http("GET", server.url + "/v1/models/digits/versions/1/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    image = sig["inputs"]["image"]
    assert image["dtype"] == "DT_FLOAT"
    assert image["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "64", "name": ""}],
        "unknown_rank": False,
    }
    status, body = http("GET", server.url + "/v1/models/digits/labels/canary/metadata")
    assert body["model_spec"]["version"] == "2"


def test_tf_serving_predict_row_and_columnar(server: ServerHandle) -> None:
    url = server.url + "/v1/models/multi:predict"
    rows = {"instances": [{"a": [1, 2, 3], "b": [1, 1]}, {"a": [0, 0, 1], "b": [0, 0]}]}
    status, body = http("POST", url, rows)
    assert status == 200
    assert body["predictions"] == [
        {"doubled": [2.0, 4.0, 6.0], "total": 8.0},
        {"doubled": [0.0, 0.0, 2.0], "total": 1.0},
    ]
    cols = {"inputs": {"a": [[1, 2, 3], [0, 0, 1]], "b": [[1, 1], [0, 0]]}}
    status, body = http("POST", url, cols)
    assert status == 200
    assert body["outputs"] == {"doubled": [[2.0, 4.0, 6.0], [0.0, 0.0, 2.0]], "total": [8.0, 1.0]}
    status, body = http("POST", url, {**rows, **cols})
    assert status == 400 and "not both" in body["error"]


def test_versions_and_labels_route_predictions(server: ServerHandle) -> None:
    one = {"instances": [[0.5] * 64]}
    for path in ("/versions/1", "/versions/2", "/labels/stable", "/labels/canary", ""):
        status, body = http("POST", f"{server.url}/v1/models/digits{path}:predict", one)
        assert status == 200, body
    status, body = http("POST", server.url + "/v1/models/digits/versions/7:predict", one)
    assert status == 404 and body["error"] == "Servable not found for request: Specific(digits, 7)"
    status, body = http("POST", server.url + "/v1/models/digits/labels/nope:predict", one)
    assert status == 400 and body["error"].startswith("Unrecognized servable version label: nope")
    status, body = http(
        "POST", server.url + "/v1/models/digits/versions/1/labels/stable:predict", one
    )
    assert status == 400 and body["error"].startswith("Malformed request")


def test_binary_inputs_and_bytes_outputs(server: ServerHandle) -> None:
    raw = b"\x00\xffbinary"
    body = {"instances": [{"b64": base64.b64encode(raw).decode()}, "plain"]}
    status, answer = http("POST", server.url + "/v1/models/strings:predict", body)
    assert status == 200
    first, second = answer["predictions"]
    assert first == {"length": len(raw), "echo_bytes": {"b64": base64.b64encode(raw).decode()}}
    assert second["length"] == 5 and base64.b64decode(second["echo_bytes"]["b64"]) == b"plain"


def test_classify_and_regress(server: ServerHandle) -> None:
    examples = {"examples": [{"x": 0.25}, {"x": 1.0}]}
    status, body = http("POST", server.url + "/v1/models/examples:classify", examples)
    assert status == 200, body
    assert body["results"] == [[["yes", 0.25], ["no", 0.75]], [["yes", 1.0], ["no", 0.0]]]
    status, body = http(
        "POST",
        server.url + "/v1/models/examples:regress",
        {"signature_name": "regress_x", "examples": [{"x": 0.5}], "context": {"unused": "a"}},
    )
    assert status == 200, body
    assert body["results"] == [1.0]
    status, body = http("POST", server.url + "/v1/models/digits:classify", examples)
    assert status == 400 and "classify" in body["error"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"instances": [[1.0, 2.0', "malformed JSON"),
        (b'{"instances": "abc"}', "list"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"instances": [[1e400]]}', "image"),
        (json.dumps({"instances": [["x"] * 64]}).encode(), "string"),
        (json.dumps({"instances": [[10**40] * 64]}).encode(), "image"),
        (json.dumps({"instances": [[1.0] * 63]}).encode(), "64"),
        (b'{"instances": ["\xc3\x28"]}', "UTF-8"),
        (b"{}", "instances"),
    ],
)
def test_hostile_input_gets_a_4xx_with_a_message(
    server: ServerHandle, raw: bytes, needle: str
) -> None:
    status, body = http("POST", server.url + "/serving_default/predict", raw=raw)
    assert 400 <= status < 500
    assert needle in body["error"]
    status, _ = http("POST", server.url + "/serving_default/predict", {"instances": [[0.0] * 64]})
    assert status == 200


def test_oversized_body_gets_413(server: ServerHandle) -> None:
    status, body = http("POST", server.url + "/serving_default/predict", raw=b" " * 300_000)
    assert status == 413 and "larger" in body["error"]
    # The same without a Content-Length: chunked transfer encoding.
    with socket.create_connection((server.url.split("//")[1].split(":")[0], server.port)) as s:
        s.sendall(
            b"POST /serving_default/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 100_000
        for _ in range(3):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")


def test_unknown_routes_and_methods_answer_json(server: ServerHandle) -> None:
    status, body = http("GET", server.url + "/nowhere")
    assert status == 404 and "error" in body
    status, body = http("GET", server.url + "/serving_default/predict")
    assert status == 405 and "POST" in body["error"]
    status, body = http("POST", server.url + "/v1/models/digits:explode", {})
    assert status == 400 and body["error"] == "Malformed request: POST /v1/models/digits:explode"


def test_concurrent_requests_share_model_calls_and_a_bad_one_fails_alone(
    server: ServerHandle,
) -> None:
    url = server.url + "/v1/models/multi:predict"
    checked = {"signature_name": "checked"}
    calls = server.repository.metrics.model_calls
    before = calls.value("multi/1")
    barrier = threading.Barrier(24)

    def send(i: int) -> tuple[int, Any]:
        x = [float("nan"), 0.0] if i == 7 else [float(i), 0.0]
        barrier.wait()
        raw = json.dumps({**checked, "instances": [x]}, allow_nan=True).encode()
        return http("POST", url, raw=raw)

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(send, range(24)))
    for i, (status, body) in enumerate(results):
        if i == 7:
            assert status == 400 and "finite" in body["error"]
        else:
            assert status == 200 and body["predictions"] == [[i + 1.0, 1.0]]
    assert calls.value("multi/1") > before


def test_batches_hold_several_requests(server: ServerHandle) -> None:
    sizes = server.repository.metrics.batch_size
    url = server.url + "/v1/models/digits:predict"
    barrier = threading.Barrier(16)

    def send(_: int) -> int:
        barrier.wait()
        return http("POST", url, {"instances": [[0.1] * 64]})[0]

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(send, range(16))) == {200}
    # On average more than one instance per model call.
    assert sizes.sum("digits/2") > sizes.count("digits/2")


def test_health_and_metrics(server: ServerHandle) -> None:
    status, body = http("GET", server.url + "/healthz")
    assert status == 200 and body["ready"] is True and body["live"] is True
    status, text = http("GET", server.url + "/metrics")
    assert status == 200
    for name in (
        "tfdeploy_requests_total",
        "tfdeploy_request_duration_seconds_bucket",
        "tfdeploy_errors_total",
        "tfdeploy_batch_size_bucket",
        "tfdeploy_queue_depth",
    ):
        assert name in text
    assert 'tfdeploy_requests_total{protocol="rest",route="tfs_predict",status="200"}' in text


def test_queue_bound_answers_503(spin_savedmodel: Path) -> None:
    handle = serve_savedmodel(spin_savedmodel, port=0, background=True, quiet=True, max_enqueued=1)
    assert handle is not None
    metrics = handle.repository.metrics
    url = handle.url + "/serving_default/predict"
    answers: dict[str, Any] = {}

    def send(name: str, n: int) -> None:
        answers[name] = http("POST", url, {"instances": [n]})

    busy = threading.Thread(target=send, args=("busy", 1_000_000))
    queued = threading.Thread(target=send, args=("queued", 1))
    try:
        busy.start()
        wait_until(lambda: metrics.model_calls.value("default/1") == 1)  # the model is busy
        queued.start()
        wait_until(lambda: handle.repository.queue_depth() == 1)  # the queue is full
        status, body = http("POST", url, {"instances": [1]})
        assert status == 503 and "busy" in body["error"]
        busy.join()
        queued.join()
        assert answers["busy"] == (200, {"predictions": [{"done": 1_000_000}]})
        assert answers["queued"] == (200, {"predictions": [{"done": 1}]})
        assert http("POST", url, {"instances": [2]}) == (200, {"predictions": [{"done": 2}]})
    finally:
        handle.stop()


def wait_until(condition: Any, limit: float = 60.0) -> None:
    """Poll ``condition``; a guard against hanging, not a timing assertion."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.005)
