"""The command line when a server is down, or busy: refused connections are reported at once
with their address, retries stay quiet unless --verbose, status exits 1 for a target it
cannot reach, and rollback asks first, takes --yes, and keeps what it replaces."""

from __future__ import annotations

import http.server
import os
import pty
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tfdeploy
from tfdeploy.testing import Project
from tfdeploy.testing.cli import CLI, Run


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def down(tfdeploy_project: Project, tmp_path: Path) -> tuple[Project, int]:
    """A project whose targets point at a port where nothing listens."""
    port = dead_port()
    models = str(tmp_path / "models")
    tfdeploy_project.add_target(
        "grpc", "tfserving", base_path=models, grpc=f"127.0.0.1:{port}", wait_timeout=300
    )
    tfdeploy_project.add_target(
        "rest", "tfserving", base_path=models, rest_url=f"http://127.0.0.1:{port}", protocol="rest"
    )
    tfdeploy_project.add_target("files", "tfserving", base_path=models)
    return tfdeploy_project, port


def timed(cli: CLI, *args: str) -> tuple[Run, float]:
    started = time.monotonic()
    run = cli(*args)
    return run, time.monotonic() - started


def test_predict_and_verify_say_at_once_that_the_connection_was_refused(
    down: tuple[Project, int], cli: CLI
) -> None:
    project, port = down
    config = str(project.config)
    instances = str(project.root / "instances.json")
    for target in ("grpc", "rest"):
        predict, waited = timed(
            cli, "predict", "--target", target, "--input", instances, "--config", config
        )
        assert predict.returncode == 1
        err = predict.stderr
        assert f"127.0.0.1:{port}" in err and "connection refused" in err, err
        assert "retrying" not in err and "still failing" not in err
        assert waited < 30  # the default --timeout is 60 s: it did not wait for it
        verify, waited = timed(cli, "verify", "-t", target, "--config", config, "--timeout", "120")
        assert verify.returncode == 1
        err = verify.stderr
        assert len(err.strip().splitlines()) == 1, err
        assert f"{target}: error: cannot reach " in err and f"127.0.0.1:{port}" in err
        assert waited < 60


def test_status_exits_1_for_a_target_it_cannot_reach(down: tuple[Project, int], cli: CLI) -> None:
    project, port = down
    config = str(project.config)
    tfdeploy.deploy(config=project.config, target="files", validate=False)
    status = cli("status", "--config", config)
    assert status.returncode == 1
    assert "files (tfserving): digits version 1 unknown" in status.stdout  # no server to ask
    assert f"grpc: error: cannot reach 127.0.0.1:{port}" in status.stderr
    assert f"rest: error: cannot reach http://127.0.0.1:{port}" in status.stderr
    ok = cli("status", "-t", "files", "--config", config)
    assert ok.returncode == 0, ok.stderr
    as_json = cli("status", "--json", "--config", config)
    assert as_json.returncode == 1 and as_json.stderr == ""
    for text in (status.stdout, status.stderr):
        assert "retrying" not in text
    for args in (["--help"], ["status", "--help"]):
        text = " ".join(cli(*args).stdout.split())
        assert "cannot be reached" in text, text
    assert "Exit codes: 0 success; 1 failure" in " ".join(cli("--help").stdout.split())


def test_deploy_says_the_connection_was_refused_and_changes_nothing(
    down: tuple[Project, int], cli: CLI, tmp_path: Path
) -> None:
    project, port = down
    tfdeploy.deploy(config=project.config, target="files", validate=False)
    run, waited = timed(
        cli, "deploy", "-t", "grpc", "--yes", "--no-validate", "--config", str(project.config)
    )
    assert run.returncode == 1
    err = run.stderr
    assert f"cannot reach 127.0.0.1:{port}" in err and "connection refused" in err, err
    assert "did not serve" not in err
    assert waited < 60  # not the target's 300 s wait_timeout
    assert sorted(p.name for p in (tmp_path / "models" / "digits").iterdir()) == ["1"]


class Busy(http.server.BaseHTTPRequestHandler):
    """A REST server that is always busy: 503 to everything."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(503)
        body = b'{"error": "overloaded"}'
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_retries_of_a_busy_server_are_quiet_unless_verbose_and_bounded_by_timeout(
    tfdeploy_project: Project, cli: CLI, busy_url: str, tmp_path: Path
) -> None:
    tfdeploy_project.add_target(
        "busy", "tfserving", base_path=str(tmp_path / "m"), rest_url=busy_url, protocol="rest"
    )
    args = ["--target", "busy", "--input", str(tfdeploy_project.root / "instances.json")]
    args += ["--config", str(tfdeploy_project.config), "--timeout", "2"]
    quiet = cli("predict", *args)
    assert quiet.returncode == 1
    assert "still failing after 2 s of retries" in quiet.stderr
    assert "retrying in" not in quiet.stderr
    loud = cli("predict", *args, "--verbose")
    assert loud.returncode == 1
    assert loud.stderr.count("retrying in") >= 2
    verify = cli("verify", "-t", "busy", "--config", str(tfdeploy_project.config), "--timeout", "2")
    assert verify.returncode == 1 and "retrying in" not in verify.stderr
    verbose = cli(
        "verify", "-t", "busy", "-v", "--config", str(tfdeploy_project.config), "--timeout", "2"
    )
    assert "[busy]" in verbose.stderr and "retrying in" in verbose.stderr


def on_a_terminal(args: list[str], cwd: Path, answer: str) -> tuple[int, str]:
    """Run ``tfdeploy ARGS`` with a terminal for stdin, type ``answer``, return code and output."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tfdeploy", *args],
        cwd=cwd,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    os.close(terminal)
    time.sleep(0.5)
    os.write(controller, answer.encode() + b"\n")
    out, err = process.communicate(timeout=120)
    os.close(controller)
    return process.returncode, out + err


def test_rollback_asks_takes_yes_and_keeps_the_version_it_replaces(
    tfdeploy_project: Project, cli: CLI, digits_savedmodel_changed: Path, tmp_path: Path
) -> None:
    tfdeploy_project.add_target("alpha", "example", path=str(tmp_path / "alpha"))
    config = tfdeploy_project.config
    tfdeploy.deploy(config=config, target="alpha", validate=False)
    tfdeploy.deploy(digits_savedmodel_changed, config=config, target="alpha", validate=False)
    current = tmp_path / "alpha" / "digits" / "CURRENT"
    assert current.read_text() == "2"

    code, text = on_a_terminal(["rollback", "-t", "alpha"], tfdeploy_project.root, "n")
    assert code == 130 and "Roll alpha back to the previous version" in text, text
    assert current.read_text() == "2"  # refused: nothing changed

    back = cli("rollback", "-t", "alpha", "--yes", "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert "alpha: rolled back; now digits version 1" in back.stdout
    assert (tmp_path / "alpha" / "digits" / "2").is_dir()  # kept, so...
    forward = cli("rollback", "-t", "alpha", "--to", "2", "-y", "--config", str(config))
    assert forward.returncode == 0, forward.stderr  # ...it can be rolled forward
    assert current.read_text() == "2"

    discard = cli("rollback", "-t", "alpha", "--yes", "--discard", "--config", str(config))
    assert discard.returncode == 0, discard.stderr
    assert not (tmp_path / "alpha" / "digits" / "2").exists()
    again = cli("rollback", "-t", "alpha", "--to", "2", "--yes", "--config", str(config))
    assert again.returncode == 1

    helped = cli("rollback", "--help")
    assert "--yes" in helped.stdout and "--discard" in helped.stdout
