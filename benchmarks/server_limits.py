"""How the server holds up against slow and greedy clients (issue 9, points 6 and 7).

    .venv/bin/python benchmarks/server_limits.py

Serves the digits model with ``tfdeploy serve`` in its own process, default settings unless
said, and measures:

1. The time until a stalled request is closed: a client that sends headers announcing
   ``Content-Length: 1000`` and then 100 bytes, and one that sends half its headers. With the
   defaults (``--body-timeout 30``, ``--header-timeout 10``) the server answers 408 and
   closes; the time is measured from the last byte sent.
2. The server's peak resident memory (``VmHWM``) under eight concurrent 31 MB predict bodies,
   with the default ``--max-inflight-bytes`` (twice ``--max-body-bytes``: 64 MiB) and with the
   bound lifted (``--max-inflight-bytes 10^12``, what the server did before the bound), and how
   many of the eight were answered 200 and how many 503.

Results also go to benchmarks/results/server_limits.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def start(model: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tfdeploy", "serve", str(model), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert server.stdout is not None
    url = server.stdout.readline().split(" under ", 1)[1].split()[0]
    return server, int(url.rsplit(":", 1)[1])


def stop(server: subprocess.Popen[str]) -> None:
    server.terminate()
    server.wait(timeout=60)


def hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def stalled(port: int, payload: bytes) -> tuple[float, bytes]:
    """Send ``payload`` and wait; return seconds until the server closed, and what it said."""
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        sock.sendall(payload)
        sent = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return time.monotonic() - sent, data.split(b"\r\n", 1)[0]


def big_body(megabytes: int) -> bytes:
    row = "[" + ",".join(["0.123456"] * 64) + "]"
    count = megabytes * 1_000_000 // (len(row) + 1)
    return ('{"instances":[' + ",".join([row] * count) + "]}").encode()


def flood(port: int, body: bytes, n: int) -> list[int]:
    statuses: list[int] = [0] * n
    barrier = threading.Barrier(n)

    def send(i: int) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/serving_default/predict", data=body, method="POST"
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                answer.read()
                statuses[i] = answer.status
        except urllib.error.HTTPError as exc:
            statuses[i] = exc.code
        except OSError:
            statuses[i] = -1  # the server closed the connection after refusing the body

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def main() -> None:
    from tfdeploy.examples.digits import train
    from tfdeploy.predict.export import export_savedmodel

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="server-limits-") as tmp:
        model = export_savedmodel(train(epochs=1), Path(tmp) / "digits")
        server, port = start(model)
        try:
            body_wait, body_answer = stalled(
                port,
                b"POST /serving_default/predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1000\r\n\r\n" + b"[" * 100,
            )
            head_wait, head_answer = stalled(
                port, b"POST /serving_default/predict HTTP/1.1\r\nHost: x\r\n"
            )
        finally:
            stop(server)
        results["stalled_body"] = {"seconds": body_wait, "answer": body_answer.decode()}
        results["stalled_headers"] = {"seconds": head_wait, "answer": head_answer.decode()}
        print(f"stalled body (100 of 1000 bytes): closed after {body_wait:.1f} s, {body_answer!r}")
        print(f"stalled headers: closed after {head_wait:.1f} s, {head_answer!r}")

        body = big_body(31)
        for name, extra in (
            ("default --max-inflight-bytes (64 MiB)", ()),
            ("--max-inflight-bytes 10^12 (no bound)", ("--max-inflight-bytes", str(10**12))),
        ):
            server, port = start(model, *extra)
            try:
                before = hwm(server.pid)
                statuses = flood(port, body, 8)
                peak = hwm(server.pid)
            finally:
                stop(server)
            row = {
                "rss_before_mb": before / 2**20,
                "peak_mb": peak / 2**20,
                "answered_200": statuses.count(200),
                "answered_503": statuses.count(503),
                "statuses": statuses,
            }
            results[name] = row
            print(
                f"8 x {len(body) / 1e6:.0f} MB bodies, {name}: peak RSS {peak / 2**20:.0f} MB "
                f"(idle {before / 2**20:.0f} MB); 200: {row['answered_200']}, "
                f"503: {row['answered_503']}"
            )
    out = ROOT / "benchmarks" / "results" / "server_limits.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
