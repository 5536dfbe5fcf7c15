"""`create_app`: the REST API as a plain ASGI application, for any ASGI host (e.g. Connect)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tfdeploy.server import create_app

pytestmark = pytest.mark.slow


async def call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    """One request through the ASGI interface, as an ASGI server would make it."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_create_app_serves_without_tfdeploys_own_server(digits_savedmodel: Path) -> None:
    app = create_app(digits_savedmodel)

    async def scenario() -> list[tuple[int, Any]]:
        return [
            await call(app, "POST", "/serving_default/predict", b'{"instances": [[0.0]]}'),
            await call(
                app,
                "POST",
                "/serving_default/predict",
                json.dumps({"instances": [[0.0] * 64]}).encode(),
            ),
            await call(app, "GET", "/v1/models/default"),
        ]

    try:
        (bad_status, bad), (status, predicted), (_, models) = asyncio.run(scenario())
    finally:
        app.repository.close()
    # The model refuses one value per instance; the answer names what the input expects.
    assert bad_status == 400 and "'image' expects DT_FLOAT values of shape [64]" in bad["error"]
    # The R route answers in the R package's format: every output keyed by its name.
    assert status == 200 and len(predicted["predictions"][0]["prediction"]) == 10
    assert models["model_version_status"][0]["state"] == "AVAILABLE"
