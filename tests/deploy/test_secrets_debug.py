"""Secrets stay masked in debug tracebacks, chained exceptions and exception arguments, in any
form a library prints them (escaped, percent-encoded), and on every other path text takes:
log records, warnings, uncaught exceptions in threads and in the main thread."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

from tfdeploy.testing import Project
from tfdeploy.testing.cli import CLI

#: A secret with characters that repr(), JSON and URLs each write differently.
SECRET = 'k3y\\with"quote%and/slash-é-5e6f'


def forms(secret: str) -> list[str]:
    """The ways code prints a string: as is, escaped, percent-encoded."""
    return [
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    ]


def assert_masked(text: str) -> None:
    for form in forms(SECRET):
        assert form not in text, f"the secret leaked as {form!r}"
    assert "k3y" not in text


def test_debug_tracebacks_never_show_a_secret_in_any_form(
    tfdeploy_project: Project, cli: CLI, tmp_path: Path
) -> None:
    tfdeploy_project.add_target(
        "down",
        "tfserving",
        base_path=str(tmp_path / "models"),
        rest_url="http://127.0.0.1:1/${SECRET_KEY}",
        protocol="rest",
    )
    tfdeploy_project.add_target(
        "grpc",
        "tfserving",
        base_path=str(tmp_path / "m"),
        grpc="127.0.0.1:1",
        api_key="${SECRET_KEY}",
    )
    tfdeploy_project.add_target("pasted", "tfserving", base_path="/proc/${SECRET_KEY}/models")
    cli.env.update(SECRET_KEY=SECRET, TFDEPLOY_DEBUG="1")
    config = str(tfdeploy_project.config)
    instances = str(tfdeploy_project.root / "instances.json")
    runs = [
        cli("predict", "--target", "down", "--input", instances, "--config", config),
        cli("verify", "-t", "down", "--config", config, "--timeout", "5"),
        cli("status", "--config", config),
        cli("status", "--json", "--config", config),
        cli("deploy", "-t", "pasted", "--yes", "--no-validate", "--config", config),
        cli("deploy", "-t", "grpc", "--yes", "--no-validate", "--config", config, "--json"),
    ]
    text = "\n".join(r.stdout + r.stderr for r in runs)
    assert "Traceback" in text  # debugging shows the tracebacks, chained causes included
    assert "The above exception was the direct cause" in text
    assert "***" in text
    assert "internal error" not in text
    assert_masked(text)


PROGRAM = r"""
import logging, sys, threading, warnings
from tfdeploy.secrets import add_secret
secret = sys.argv[1]
add_secret(secret)
logging.basicConfig(level=logging.INFO)
log = logging.getLogger("some.library")
log.info("connecting to http://host/%s", secret)
log.warning("as json: %s", {"token": secret})
try:
    raise RuntimeError("bad token", secret)
except RuntimeError:
    logging.getLogger("tfdeploy.server").exception("while serving %r", secret)
warnings.warn(f"deprecated url /{secret}", stacklevel=1)
def fail():
    raise ValueError(f"thread saw {secret!r}")
t = threading.Thread(target=fail, name="worker")
t.start(); t.join()
try:
    open(f"/nonexistent/{secret}")
except OSError as exc:
    raise KeyError(secret) from exc
"""


def test_logs_warnings_and_uncaught_exceptions_are_masked_once_a_secret_is_known() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROGRAM, SECRET], capture_output=True, text=True, timeout=60
    )
    err = run.stderr
    assert run.returncode == 1
    for seen in (
        "connecting to http://host/***",
        "as json:",
        "while serving",
        "RuntimeError",
        "UserWarning: deprecated url /***",
        "Exception in thread worker",
        "ValueError: thread saw",
        "FileNotFoundError",
        "KeyError",
    ):
        assert seen in err, (seen, err)
    assert_masked(err)
