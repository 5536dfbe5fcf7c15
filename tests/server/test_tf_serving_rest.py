"""TF Serving's REST API as TF Serving's own handler tests expect it (http_rest_api_handler_test,
json_tensor_test), served from TF Serving's test model half_plus_two rebuilt as TensorFlow 1.x
wrote it: routes, status codes, error words, answers and metadata."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.server.conftest import http

from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow

MODEL = "saved_model_half_plus_two_2_versions"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    half_plus_two_base: Path,
    digits_savedmodel: Path,
    scalar_examples_savedmodel: Path,
) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("tfs-rest")
    shutil.copytree(digits_savedmodel, root / "digits" / "1")
    shutil.copytree(scalar_examples_savedmodel, root / "scalar" / "1")
    config = root / "models.config"
    config.write_text(
        f"""model_config_list {{
  config {{ name: '{MODEL}' base_path: '{half_plus_two_base}' model_platform: 'tensorflow'
           model_version_policy {{ specific {{ versions: 123 }} }}
           version_labels {{ key: 'Version_Label' value: 123 }} }}
  config {{ name: 'digits' base_path: '{root / "digits"}' }}
  config {{ name: 'scalar' base_path: '{root / "scalar"}' }}
}}"""
    )
    handle = serve_savedmodel(
        model_config_file=config, port=0, background=True, quiet=True, poll_seconds=0
    )
    assert handle is not None
    yield handle
    handle.stop()


def raw(server: ServerHandle, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    """A request with the path sent exactly as written (urllib would normalise it)."""
    host = urlsplit(server.url)
    connection = HTTPConnection(host.hostname, host.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
        return response.status, json.loads(text) if text else None
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("method", "path", "words"),
    [
        ("GET", "/v1/foo", "Malformed request: GET /v1/foo"),
        ("POST", "/v1/foo", "Malformed request"),
        ("GET", "/v1/models", "Missing model name in request."),
        ("GET", "/v1/models/debug/model_name", "Malformed request"),
        ("POST", "/v1/models", "Malformed request"),
        ("GET", "/v1/models/foo:predict", "Malformed request"),
        ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
        ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
        (
            "POST",
            "/v1/models/foo/versions/18446744073709551615:regress",
            "Failed to convert version: 18446744073709551615 to numeric.",
        ),
        ("POST", "/v1/models/foo/metadata", "Malformed request"),
        ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
        ("PUT", f"/v1/models/{MODEL}", "Malformed request: PUT"),
        ("DELETE", f"/v1/models/{MODEL}/metadata", "Malformed request: DELETE"),
        ("POST", f"/v1/models/{MODEL}:PREDICT", "Malformed request"),
        ("GET", f"/v1/models/{MODEL}/", "Malformed request"),
    ],
)
def test_unsupported_api_calls_are_400_malformed_request(
    server: ServerHandle, method: str, path: str, words: str
) -> None:
    status, body = raw(server, method, path, b'{"instances": [1]}' if method == "POST" else b"")
    assert status == 400
    assert words in body["error"]


def test_model_name_and_version_errors_are_404(server: ServerHandle) -> None:
    for path in ("/v1/models/foo:predict", "/v1/models/foo/versions/50:predict"):
        status, body = http("POST", server.url + path, {"instances": [1]})
        assert status == 404 and "Servable not found for request" in body["error"]
    status, body = http("POST", server.url + f"/v1/models/{MODEL}99:predict", {"instances": [1]})
    assert status == 404
    status, body = http(
        "POST", server.url + f"/v1/models/{MODEL}/versions/99:predict", {"instances": [1]}
    )
    assert (
        status == 404 and body["error"] == f"Servable not found for request: Specific({MODEL}, 99)"
    )


def test_predict_request_errors(server: ServerHandle) -> None:
    url = server.url + f"/v1/models/{MODEL}:predict"
    status, body = raw(server, "POST", f"/v1/models/{MODEL}:predict", b"")
    assert status == 400 and "JSON Parse error: The document is empty" in body["error"]
    status, body = http("POST", url, raw=b"instances = [1, 2]")
    assert status == 400 and "JSON Parse error" in body["error"]
    # The body is read before the model is looked up, as in TF Serving.
    status, body = raw(server, "POST", "/v1/models/nope:predict", b"")
    assert status == 400 and "The document is empty" in body["error"]
    status, body = http("POST", url, {"instances": ["x", "y"]})
    assert status == 400 and "not of expected type: float" in body["error"]
    status, body = http(
        "POST",
        server.url + f"/v1/models/{MODEL}/labels/Version_Nonexistent:predict",
        {"instances": ["x", "y"]},
    )
    assert status == 400 and "Unrecognized servable version label" in body["error"]
    status, body = http("POST", url, {"signature_name": 100})
    assert status == 400 and "'signature_name' key must be a string value." in body["error"]
    status, body = http("POST", url, {"signature_name": "nope", "instances": [1.0]})
    assert status == 400
    assert 'Serving signature name: "nope" not found in signature def' in body["error"]


def test_predict_answers_as_tf_serving(server: ServerHandle) -> None:
    base = server.url + f"/v1/models/{MODEL}"
    cases = [
        (
            ":predict",
            {"instances": [[1.0, 2.0], [3.0, 4.0]]},
            {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        ),
        ("/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        ("/labels/Version_Label:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (
            "/versions/123:predict",
            {"signature_name": "serving_default", "instances": [3.0, 4.0]},
            {"predictions": [3.5, 4.0]},
        ),
        (
            "/versions/123:predict",
            {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
            {"outputs": [3.5, 4.0]},
        ),
        # TF Serving's documentation example: x is declared [-1, 1], the model takes [3].
        (":predict", {"instances": [1.0, 2.0, 5.0]}, {"predictions": [2.5, 3.0, 4.5]}),
        (":predict", {"instances": [[1.0], [2.0], [5.0]]}, {"predictions": [[2.5], [3.0], [4.5]]}),
        (":predict", {"inputs": {"x": [[1.0], [2.0]]}}, {"outputs": [[2.5], [3.0]]}),
        (":predict", {"instances": [{"x": [1.1]}]}, {"predictions": [[2.55]]}),
    ]
    for suffix, body, want in cases:
        status, got = http("POST", base + suffix, body)
        assert (status, got) == (200, want), (suffix, body)
    # Case does not matter in the route, as in TF Serving; the name is percent-decoded.
    status, got = raw(
        server, "POST", f"/V1/Models/{MODEL.replace('_', '%5F')}:predict", b'{"instances": [1.0]}'
    )
    assert (status, got) == (200, {"predictions": [2.5]})


def test_regress_and_classify_as_tf_serving(server: ServerHandle) -> None:
    base = server.url + f"/v1/models/{MODEL}"
    regress = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    for suffix in (":regress", "/versions/123:regress", "/labels/Version_Label:regress"):
        assert http("POST", base + suffix, regress) == (200, {"results": [42.0]})
    status, body = http(
        "POST", base + ":classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    )
    assert (status, body) == (200, {"results": [[["", 12.0]]]})
    status, body = http(
        "POST",
        base + "/labels/Version_Label:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]},
    )
    assert (status, body) == (200, {"results": [[["", 7.0]]]})
    # The context's features apply to every example that lacks its own.
    status, body = http(
        "POST",
        base + ":regress",
        {"signature_name": "regress_x2_to_y3", "context": {"x2": 4.0}, "examples": [{"x": 1.0}]},
    )
    assert status == 400 and "Type mismatch" in body["error"]  # a float input fed tf.Examples
    status, body = http(
        "POST",
        base + ":regress",
        {"signature_name": "regress_x_to_y2", "context": {"x": 2.0}, "examples": [{}, {"x": 4.0}]},
    )
    assert (status, body) == (200, {"results": [4.0, 5.0]})


def test_scalar_parse_example_signatures_classify_and_regress_a_batch(server: ServerHandle) -> None:
    examples = {"examples": [{"x": 2.5}, {"x": 10}]}  # 10 is an int64 feature: refused by x
    status, body = http("POST", server.url + "/v1/models/scalar:classify", examples)
    assert status == 400 and "x" in body["error"]
    examples = {"examples": [{"x": 2.5}, {"x": 10.0}]}
    status, body = http("POST", server.url + "/v1/models/scalar:classify", examples)
    assert (status, body) == (
        200,
        {"results": [[["low", 0.75], ["high", 0.25]], [["low", 0.0], ["high", 1.0]]]},
    )
    status, body = http(
        "POST", server.url + "/v1/models/scalar:regress", {"signature_name": "regress", **examples}
    )
    assert (status, body) == (200, {"results": [5.0, 20.0]})


@pytest.mark.parametrize(
    ("suffix", "body", "words"),
    [
        (":classify", {"examples": [{"x": 1.0}]}, "Expected classification signature method_name"),
        (
            ":regress",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]},
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/classify",
        ),
        (
            ":regress",
            {"signature_name": "nope", "examples": [{"x": 1.0}]},
            "No signature was found with the name: nope",
        ),
        (
            ":classify",
            {"signature_name": "classify_x_to_y"},
            "When method is classify, key 'examples' is expected and was not found",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": {}},
            "Expecting 'examples' value to be an list/array",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": []},
            "'examples' value is an empty array",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [[1.0]]},
            "Example must be JSON object but got JSON Array",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": None}]},
            "Feature: x has element with unexpected JSON type: Null",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, "a"]}]},
            "Unexpected element type in feature: x expecting type: float",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"names": [10, 10.0]}]},
            "feature: names expecting type: int64",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 1.7976931348623157e308}]},
            "loss of precision",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": [[10], 20]}]},
            "x has element with unexpected JSON type: Array",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 2**64 - 1}]},
            "has uint64 element. Only int64 is supported.",
        ),
    ],
)
def test_classify_and_regress_errors(
    server: ServerHandle, suffix: str, body: dict[str, Any], words: str
) -> None:
    status, answer = http("POST", server.url + f"/v1/models/{MODEL}{suffix}", body)
    assert status == 400 and words in answer["error"], answer


def test_status_as_tf_serving(server: ServerHandle) -> None:
    expected = {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    for suffix in ("", "/versions/123", "/labels/Version_Label"):
        assert http("GET", server.url + f"/v1/models/{MODEL}{suffix}") == (200, expected)
    status, body = http("GET", server.url + f"/v1/models/{MODEL}/versions/7")
    assert status == 404 and body["error"] == f"Could not find version 7 of model {MODEL}"
    status, body = http("GET", server.url + f"/v1/models/{MODEL}/labels/nope")
    assert status == 400 and "Unrecognized servable version label: nope" in body["error"]
    status, body = http("GET", server.url + "/v1/models/nope")
    assert status == 404 and body["error"] == "Could not find any versions of model nope"


def test_metadata_is_tf_servings_field_by_field(
    server: ServerHandle, half_plus_two_base: Path
) -> None:
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    # What TF Serving prints: the MetaGraphDef's SignatureDefs as protobuf JSON with the
    # proto field names and every field without presence ("defaults": {} included).
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((half_plus_two_base / "00000123" / "saved_model.pb").read_bytes())
    want = {
        name: json_format.MessageToDict(
            sig, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for name, sig in saved.meta_graphs[0].signature_def.items()
    }
    for suffix in ("/metadata", "/versions/123/metadata", "/labels/Version_Label/metadata"):
        status, body = http("GET", server.url + f"/v1/models/{MODEL}{suffix}")
        assert status == 200
        assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "123"}
        assert body["metadata"]["signature_def"]["signature_def"] == want
    regress = want["regress_x_to_y"]
    assert regress["defaults"] == {} and regress["method_name"] == "tensorflow/serving/regress"
    assert regress["inputs"]["inputs"] == {
        "name": "tf_example:0",
        "dtype": "DT_STRING",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
    }
    # A TensorFlow 2 model lists TensorFlow's init-op signature too, as TF Serving does.
    status, body = http("GET", server.url + "/v1/models/digits/metadata")
    init = body["metadata"]["signature_def"]["signature_def"]["__saved_model_init_op"]
    assert init == {
        "inputs": {},
        "outputs": {
            "__saved_model_init_op": {
                "name": "NoOp",
                "dtype": "DT_INVALID",
                "tensor_shape": {"dim": [], "unknown_rank": True},
            }
        },
        "method_name": "",
        "defaults": {},
    }
