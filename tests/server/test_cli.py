"""`tfdeploy serve` as a user runs it: start-up lines, bad arguments, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.server.conftest import http

pytestmark = pytest.mark.slow

TFDEPLOY = [sys.executable, "-m", "tfdeploy"]


def start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `tfdeploy serve` and read its start-up lines up to the docs line."""
    proc = subprocess.Popen(
        [*TFDEPLOY, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Docs:"):
            break
    else:
        raise AssertionError(f"the server stopped: {proc.stderr.read() if proc.stderr else ''}")
    return proc, lines


def in_flight(url: str) -> float:
    text = http("GET", url + "/metrics")[1]
    match = re.search(r"^tfdeploy_requests_in_flight (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_serve_prints_urls_and_finishes_in_flight_requests_on_sigterm(
    digits_savedmodel: Path,
) -> None:
    proc, lines = start(
        str(digits_savedmodel),
        "--port",
        "0",
        "--grpc-port",
        "0",
        "--max-batch-size",
        "8",
        "--batch-timeout-micros",
        "1500000",
    )
    try:
        match = re.match(r"Starting server under (http://127\.0\.0\.1:\d+) ", lines[0])
        assert match, lines
        url = match.group(1)
        assert f"  {url}/serving_default/predict/" in lines
        assert f"TF Serving REST: {url}/v1/models/default" in lines
        assert any(re.fullmatch(r"gRPC: 127\.0\.0\.1:\d+", line) for line in lines)

        result: dict[str, Any] = {}

        def slow_request() -> None:
            # Waits in the batcher up to 1.5 s for company, so it is in flight at SIGTERM.
            result["answer"] = http(
                "POST", url + "/serving_default/predict", {"instances": [[0.0] * 64]}
            )

        t = threading.Thread(target=slow_request)
        t.start()
        deadline = time.monotonic() + 30
        while in_flight(url) < 2 and time.monotonic() < deadline:  # itself and /metrics
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        status, body = result["answer"]
        assert status == 200 and len(body["predictions"]) == 1
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_rejects_a_missing_model_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*TFDEPLOY, "serve", str(tmp_path / "missing"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: no such file or directory")
    assert "Traceback" not in done.stderr


def test_serve_a_model_base_path_by_name_and_stop_with_ctrl_c(model_base: Path) -> None:
    proc, lines = start(
        "--model-base-path", str(model_base), "--model-name", "digits", "--port", "0"
    )
    try:
        url = lines[0].split()[3]
        assert f"TF Serving REST: {url}/v1/models/digits" in lines
        status, body = http("GET", url + "/v1/models/digits")
        assert status == 200 and body["model_version_status"][0]["version"] == "1"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
