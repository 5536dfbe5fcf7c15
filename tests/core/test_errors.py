"""One mapping of remote statuses to errors; codes set when made; secrets masked when printed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tfdeploy import predict_savedmodel
from tfdeploy.errors import (
    CODES,
    PredictionError,
    RemoteError,
    TfdeployError,
    from_grpc_status,
    from_http_status,
)
from tfdeploy.predict.runtime import LoadedModel
from tfdeploy.secrets import add_secret
from tfdeploy.testing.cli import CLI


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "INVALID_ARGUMENT", False),
        (401, "UNAUTHENTICATED", False),
        (404, "NOT_FOUND", False),
        (413, "RESOURCE_EXHAUSTED", False),
        (429, "RESOURCE_EXHAUSTED", True),
        (503, "UNAVAILABLE", True),
        (504, "DEADLINE_EXCEEDED", True),
        (418, "INVALID_ARGUMENT", False),
        (599, "INTERNAL", False),
    ],
)
def test_http_statuses_become_errors_in_one_table(status: int, code: str, retryable: bool) -> None:
    err = from_http_status(status, "x answered")
    assert isinstance(err, RemoteError)
    assert (err.code, err.retryable, err.http_status) == (code, retryable, status)


def test_grpc_codes_and_http_codes_agree() -> None:
    for name, (http, retryable) in CODES.items():
        err = from_grpc_status(name, "a call failed")
        assert (err.code, err.retryable, err.http_status) == (name, retryable, http)
    assert from_grpc_status("NO_SUCH_CODE", "odd").code == "UNKNOWN"


def test_a_dead_server_is_the_same_error_from_a_url_and_from_a_target_and_not_retried(
    digits_instances: list,
) -> None:
    from tfdeploy_tfserving import TFServingConfig, TFServingTarget

    port = _dead_port()
    with pytest.raises(RemoteError) as from_url:
        predict_savedmodel(digits_instances, f"http://127.0.0.1:{port}/v1/models/m", timeout=5)
    target = TFServingTarget(
        TFServingConfig(base_path="/nonexistent", grpc=f"127.0.0.1:{port}"),
        name="t",
        model_name="m",
    )
    with pytest.raises(RemoteError) as from_target:
        target.predict({"instances": digits_instances})
    target.close()
    for err in (from_url.value, from_target.value):
        # Nothing listens there: known at once, and a retry a moment later would not help.
        assert (err.code, err.retryable) == ("UNAVAILABLE", False)
        assert "cannot reach" in err.message and "connection refused" in err.message
        assert f"127.0.0.1:{port}" in err.message


def test_a_silent_or_dropped_connection_stays_retryable() -> None:
    from tfdeploy.errors import from_connection_error

    assert from_connection_error("x", "timed out", timed_out=True).retryable
    assert from_connection_error("x", "connection reset by peer").retryable
    assert not from_connection_error("x", ConnectionRefusedError(111, "refused")).retryable
    assert not from_connection_error("x", "unknown host (Name or service not known)").retryable


def test_a_model_failure_carries_tensorflows_code_from_the_start(tmp_path: Path) -> None:
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()

    class Checked(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serving_default(self, x: object) -> dict[str, object]:
            tf.debugging.assert_positive(x, message="x must be positive")
            return {"y": x}

    from tfdeploy import export_savedmodel

    path = export_savedmodel(Checked(), tmp_path / "checked")
    with pytest.raises(PredictionError, match="x must be positive") as err:
        LoadedModel(path).predict({"instances": [-1.0]})
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.http_status == 400


def test_secrets_are_masked_when_printed_not_rewritten(tmp_path: Path) -> None:
    secret = "s3cr3t-in-a-message-0xdeadbeef"
    add_secret(secret)
    err = TfdeployError(f"cannot reach http://host/{secret}", hint=f"check {secret}")
    assert secret in err.message  # the error keeps what it was made with
    assert secret not in str(err) and secret not in err.describe()
    assert "***" in str(err)


def test_the_cli_masks_secrets_in_errors_and_debug_tracebacks(
    tmp_path: Path, digits_instances: list
) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refuses(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "no"}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "pa55word-in-a-url-4d5e6f"
    (tmp_path / "deploy.yaml").write_text(
        "model: {path: savedmodel, name: m}\n"
        "targets:\n"
        "  t: {plugin: tfserving, base_path: models, protocol: rest,\n"
        f"      rest_url: 'http://127.0.0.1:{server.server_port}/${{SECRET_KEY}}'}}\n"
    )
    (tmp_path / "in.json").write_text(json.dumps(digits_instances[:1]))
    cli = CLI(tmp_path)
    cli.env.update(SECRET_KEY=secret, TFDEPLOY_DEBUG="1")
    try:
        result = cli("predict", "--target", "t", "--input", "in.json")
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "answered 400" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert "/***/v1/models/m:predict" in result.stderr


def test_an_uncaught_error_shows_what_to_do_not_only_what_is_wrong(tmp_path: Path) -> None:
    import subprocess
    import sys

    err = TfdeployError("the thing is broken", hint="fix the thing")
    assert str(err) == err.describe() == "the thing is broken — fix the thing"
    assert (err.message, err.hint) == ("the thing is broken", "fix the thing")
    code = f"from tfdeploy import read_model_info\nread_model_info({str(tmp_path / 'nope')!r})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tfdeploy.errors.ModelNotFoundError: no such file or directory")
    assert "give the path of a SavedModel directory" in last
