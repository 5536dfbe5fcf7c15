"""The docs page at `/`, driven in Debian's headless Chromium: it works offline, from the package."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.server.conftest import http

from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def multi_server(multi_savedmodel: Path) -> Iterator[ServerHandle]:
    handle = serve_savedmodel(multi_savedmodel, port=0, background=True, quiet=True)
    assert handle is not None
    yield handle
    handle.stop()


def test_openapi_describes_every_route_with_its_own_answer_format(
    multi_server: ServerHandle,
) -> None:
    import jsonschema_rs

    status, spec = http("GET", multi_server.url + "/openapi.json")
    assert status == 200
    assert http("GET", multi_server.url + "/swagger.json")[1] == spec
    assert spec["info"]["title"] == "default"  # the model's name
    for signature in ("serving_default", "checked"):
        operation = spec["paths"][f"/{signature}/predict"]["post"]
        assert {t["name"] for t in operation["x-signature"]["inputs"]}
        example = operation["requestBody"]["content"]["application/json"]["example"]
        # The example request is keyed by input name.
        names = {t["name"] for t in operation["x-signature"]["inputs"]}
        assert set(example["instances"][0]) == names
        status, body = http("POST", multi_server.url + f"/{signature}/predict", example)
        assert status == 200, body
        answer = operation["responses"]["200"]["content"]["application/json"]
        jsonschema_rs.validate(answer["schema"], body)
        outputs = {t["name"] for t in operation["x-signature"]["outputs"]}
        assert set(answer["example"]["predictions"][0]) == outputs  # keyed, R's format
        assert operation["x-answer-format"] == "r" and "R package" in operation["description"]
    tf_serving = spec["paths"]["/v1/models/default:predict"]["post"]
    assert tf_serving["x-answer-format"] == "tf_serving"
    example = tf_serving["requestBody"]["content"]["application/json"]["example"]
    status, body = http("POST", multi_server.url + "/v1/models/default:predict", example)
    assert status == 200
    tfs_schema = tf_serving["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema_rs.validate(tfs_schema, body)
    a = spec["paths"]["/serving_default/predict"]["post"]["x-signature"]["inputs"][0]
    assert a == {
        "name": "a",
        "tensor_name": "serving_default_a:0",
        "dtype": "DT_FLOAT",
        "shape": [-1, 3],
        "example": [0.0, 0.0, 0.0],
    }
    schema = spec["paths"]["/serving_default/predict"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    b = schema["properties"]["instances"]["items"]["properties"]["b"]
    assert b["type"] == "array" and b["minItems"] == b["maxItems"] == 2
    assert b["items"]["type"] == "integer"


def test_openapi_of_a_one_output_model_shows_bare_and_keyed_answers(
    digits_savedmodel: Path,
) -> None:
    handle = serve_savedmodel(digits_savedmodel, port=0, background=True, quiet=True)
    assert handle is not None
    try:
        spec = http("GET", handle.url + "/openapi.json")[1]
        r_route = spec["paths"]["/serving_default/predict"]["post"]
        tfs = spec["paths"]["/v1/models/default:predict"]["post"]
        example = r_route["requestBody"]["content"]["application/json"]["example"]
        assert set(example["instances"][0]) == {"image"}
        r_answer = r_route["responses"]["200"]["content"]["application/json"]["example"]
        tfs_answer = tfs["responses"]["200"]["content"]["application/json"]["example"]
        assert r_answer == {"predictions": [{"prediction": [0.0] * 10}]}
        assert tfs_answer == {"predictions": [[0.0] * 10]}
    finally:
        handle.stop()


def test_openapi_offers_b64_for_strings(strings_savedmodel: Path) -> None:
    handle = serve_savedmodel(strings_savedmodel, port=0, background=True, quiet=True)
    assert handle is not None
    try:
        spec = http("GET", handle.url + "/openapi.json")[1]
        op = spec["paths"]["/serving_default/predict"]["post"]
        item = op["requestBody"]["content"]["application/json"]["schema"]["properties"][
            "instances"
        ]["items"]
        keyed, bare = item["oneOf"]
        assert keyed["properties"]["text"] == bare  # keyed by input name, or the value alone
        assert {"type": "string"} in bare["oneOf"]
        assert any(s.get("required") == ["b64"] for s in bare["oneOf"])
        # The answer's bytes output comes back as b64.
        answer = op["responses"]["200"]["content"]["application/json"]
        assert answer["schema"]["properties"]["predictions"]["items"]["properties"]["echo_bytes"][
            "required"
        ] == ["b64"]
        assert op["x-signature"]["inputs"][0]["b64_example"] == {"b64": "aGVsbG8="}
    finally:
        handle.stop()


def test_docs_page_sends_the_example_and_shows_predictions(multi_server: ServerHandle) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith(multi_server.url) else None,
            )
            page.goto(multi_server.url + "/")
            page.wait_for_selector("body[data-ready=true]")
            assert page.title() == "default · tfdeploy serve"  # titled with the model's name
            assert page.locator("h1").inner_text() == "default"
            paths = page.eval_on_selector_all(
                "section.route", "nodes => nodes.map(n => n.dataset.path)"
            )
            # The R package's routes first, then TF Serving's.
            assert paths == [
                "/checked/predict",
                "/serving_default/predict",
                "/v1/models/default:predict",
            ]
            expected = {
                "/serving_default/predict": {
                    "predictions": [{"doubled": [0.0, 0.0, 0.0], "total": 0.0}]
                },
                "/v1/models/default:predict": {
                    "predictions": [{"doubled": [0.0, 0.0, 0.0], "total": 0.0}]
                },
            }
            for path, answer in expected.items():
                section = page.locator(f'section[data-path="{path}"]')
                request = json.loads(section.locator("textarea.request").input_value())
                assert set(request["instances"][0]) == {"a", "b"}  # keyed by input name
                section.locator("button.send").click()
                section.locator(".status").filter(has_text="HTTP 200").wait_for()
                assert json.loads(section.locator("pre.response").inner_text()) == answer
            formats = page.eval_on_selector_all(
                "p.answer-format", "nodes => nodes.map(n => n.innerText)"
            )
            assert sum("R package format" in f for f in formats) == 2
            assert sum("TF Serving format" in f for f in formats) == 1
            assert outside == []  # nothing from a CDN
        finally:
            browser.close()
