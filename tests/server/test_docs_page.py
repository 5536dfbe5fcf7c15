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


def test_openapi_describes_every_signature_with_a_valid_example(multi_server: ServerHandle) -> None:
    status, spec = http("GET", multi_server.url + "/openapi.json")
    assert status == 200
    assert http("GET", multi_server.url + "/swagger.json")[1] == spec
    for signature in ("serving_default", "checked"):
        operation = spec["paths"][f"/{signature}/predict"]["post"]
        assert {t["name"] for t in operation["x-signature"]["inputs"]}
        example = operation["requestBody"]["content"]["application/json"]["example"]
        status, body = http("POST", multi_server.url + f"/{signature}/predict", example)
        assert status == 200, body
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


def test_openapi_offers_b64_for_strings(strings_savedmodel: Path) -> None:
    handle = serve_savedmodel(strings_savedmodel, port=0, background=True, quiet=True)
    assert handle is not None
    try:
        spec = http("GET", handle.url + "/openapi.json")[1]
        op = spec["paths"]["/serving_default/predict"]["post"]
        item = op["requestBody"]["content"]["application/json"]["schema"]["properties"][
            "instances"
        ]["items"]
        assert {"type": "string"} in item["oneOf"]
        assert any(s.get("required") == ["b64"] for s in item["oneOf"])
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
            names = page.eval_on_selector_all(
                "section.signature", "nodes => nodes.map(n => n.dataset.signature)"
            )
            assert sorted(names) == ["checked", "serving_default"]
            section = page.locator('section[data-signature="serving_default"]')
            section.locator("button.send").click()
            status = section.locator(".status")
            status.filter(has_text="HTTP 200").wait_for()
            answer = json.loads(section.locator("pre.response").inner_text())
            assert answer == {"predictions": [{"doubled": [0.0, 0.0, 0.0], "total": 0.0}]}
            assert outside == []  # nothing from a CDN
        finally:
            browser.close()
