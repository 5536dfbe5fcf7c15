"""A service-account key file's contents never appear in what tfdeploy prints.

The key is a real RSA key; the token service it names is a small local server, so the real
google-auth signs a JWT, trades it for an access token and sends that to the fake Vertex AI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tfdeploy.plugin import Bundle, ConfigError
from tfdeploy.testing.cli import CLI

from .conftest import Recorder, fake_settings, serving
from .fake_vertex import FakeVertex

ACCESS_TOKEN = "ya29.a0-local-access-token-0123456789abcdef"


class TokenServer:
    """Answers OAuth token requests (the JWT-bearer grant) with :data:`ACCESS_TOKEN`."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.requests.append(self.rfile.read(length).decode())
                body = json.dumps(
                    {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/token"


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.server.shutdown()


def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


def key_file(path: Path, token_uri: str, private_key: str) -> dict[str, str]:
    info = {
        "type": "service_account",
        "project_id": "tfdeploy-test",
        "private_key_id": "4f6c0e2d9b8a7f6e5d4c3b2a19087f6e5d4c3b2a",
        "private_key": private_key,
        "client_email": "deployer@tfdeploy-test.iam.gserviceaccount.com",
        "client_id": "104242424242424242424",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return info


def secret_parts(info: dict[str, str]) -> list[str]:
    """What must never be printed: the key id, the key, each line of the key's body."""
    lines = [line for line in info["private_key"].splitlines() if "-----" not in line]
    return [info["private_key_id"], info["private_key"], *lines, ACCESS_TOKEN]


def test_a_key_file_authenticates_every_call_and_its_contents_are_never_printed(
    vertex: FakeVertex,
    staging_bucket: Any,
    token_server: TokenServer,
    tfdeploy_project: Any,
    tmp_path: Path,
    digits_bundle: Bundle,
    make_cloudml: Any,
) -> None:
    key = tmp_path / "deployer.json"
    info = key_file(key, token_server.url, _private_key())
    progress = Recorder()
    target = make_cloudml("keyed", progress, credentials_file=str(key), anonymous=False)
    result = target.deploy(digits_bundle)
    assert token_server.requests and "jwt-bearer" in token_server.requests[0]
    assert serving(vertex, "keyed") == {("tfdeploy-keyed", "1"): 100}
    reported = json.dumps(result.to_dict()) + "\n".join(progress.steps)
    assert [s for s in secret_parts(info) if s in reported] == []

    tfdeploy_project.model_name = "keyed"
    settings = fake_settings(vertex, anonymous=None, credentials_file=str(key))
    tfdeploy_project.add_target("prod", "cloudml", **settings)
    cli = CLI(tfdeploy_project.root)
    cli.env["TFDEPLOY_DEBUG"] = "1"
    as_json = cli("status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["targets"][0]["result"]["state"] == "serving"
    # A target that fails to answer prints its error (and, in debug mode, the traceback).
    failing = cli("status", "-C", "region=europe-west4")  # the fake serves us-central1 only
    assert failing.returncode == 1 and "does not match the location" in failing.stderr
    printed = as_json.stdout + as_json.stderr + failing.stdout + failing.stderr
    assert [s for s in secret_parts(info) if s in printed] == []


def test_a_broken_key_file_is_named_and_its_contents_stay_unprinted(
    vertex: FakeVertex,
    staging_bucket: Any,
    token_server: TokenServer,
    tfdeploy_project: Any,
    tmp_path: Path,
    make_cloudml: Any,
) -> None:
    key = tmp_path / "broken.json"
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7brokenbrokenbroken"
    info = key_file(
        key, token_server.url, f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    )
    target = make_cloudml("broken", credentials_file=str(key), anonymous=False)
    with pytest.raises(ConfigError, match="broken.json is not a usable key") as raised:
        target.status()
    assert [s for s in secret_parts(info) if s in raised.value.describe()] == []
    settings = fake_settings(vertex, anonymous=None, credentials_file=str(key))
    tfdeploy_project.add_target("prod", "cloudml", **settings)
    cli = CLI(tfdeploy_project.root)
    cli.env["TFDEPLOY_DEBUG"] = "1"
    run = cli("status", "--target", "prod")
    assert run.returncode == 1
    assert "broken.json is not a usable key" in run.stderr
    assert [s for s in secret_parts(info) if s in run.stdout + run.stderr] == []
    not_json = tmp_path / "notjson.json"
    not_json.write_text(f"{body}\n")
    with pytest.raises(ConfigError, match="is not a JSON key file") as raised:
        make_cloudml("broken", credentials_file=str(not_json), anonymous=False).status()
    assert body not in raised.value.describe()
