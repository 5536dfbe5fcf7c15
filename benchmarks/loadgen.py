"""The load generators: ``wrk`` (HTTP/1.1) and ``h2load`` (HTTP/2 for gRPC, ``--h1`` for REST).

Both are C programs from Debian (``wrk``, ``nghttp2-client``), installed with apt-get when
missing (as root). Every load is bounded in time (``-d`` / ``-D``) and its process in wall time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

CONNECTIONS = 32
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def ensure_tool(command: str, package: str) -> str:
    """The path of ``command``, installing Debian's ``package`` first if it is missing."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"{command} is missing: apt-get install {package} (as root)")
    print(f"==> apt-get install {package} (for {command})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, stdout=subprocess.DEVNULL, env=env, check=False).returncode:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL, env=env)
    found = shutil.which(command)
    if not found:
        raise SystemExit(f"{command} could not be installed")
    return found


def tool_version(command: list[str]) -> str:
    """The first line a tool prints about its version."""
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0]


# --- wrk ----------------------------------------------------------------------------------


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s, p50/p99 (ms), non-2xx and socket errors from ``wrk --latency``'s output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise RuntimeError("cannot read wrk's output:\n" + text)
    result = {"rps": float(rps.group(1)), "requests": float(total.group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        result[f"p{pct}_ms"] = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    result["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return result


def wrk_command(
    url: str, script: Path, seconds: float, connections: int = CONNECTIONS
) -> list[str]:
    """The wrk command line of one load (2 threads, ``--latency``, the POST script).

    wrk's own 2 s request timeout is raised to 30 s, so that a slow server's latencies are
    measured rather than dropped as timeouts.
    """
    threads = min(2, connections)
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def post_script(body_file: Path, content_type: str = "application/json") -> Path:
    """A wrk Lua script that POSTs the bytes of ``body_file``; written beside it."""
    script = body_file.with_name(body_file.name + ".lua")
    script.write_text(
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
        f'wrk.method = "POST"; wrk.headers["Content-Type"] = "{content_type}"\n'
    )
    return script


def run_wrk(
    url: str, body_file: Path, seconds: float, connections: int = CONNECTIONS
) -> dict[str, float]:
    """One bounded wrk load POSTing ``body_file`` to ``url``."""
    command = wrk_command(url, post_script(body_file), seconds, connections)
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return parse_wrk(out)


# --- h2load -------------------------------------------------------------------------------


def parse_h2load(text: str) -> dict[str, float]:
    """Requests/s, started/done/2xx counts and failures from h2load's summary."""
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    done = re.search(
        r"requests: \d+ total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (rps and done and codes):
        raise RuntimeError("cannot read h2load's output:\n" + text)
    return {
        "rps": float(rps.group(1)),
        "started": float(done.group(1)),
        "done": float(done.group(2)),
        "ok_2xx": float(codes.group(1)),
        "status_5xx": float(codes.group(4)),
        "failed": float(done.group(4)) + float(done.group(5)) + float(done.group(6)),
    }


def h2load_command(
    h2load: str,
    url: str,
    body_file: Path,
    seconds: float,
    *,
    grpc: bool,
    connections: int = CONNECTIONS,
    log_file: Path | None = None,
) -> list[str]:
    """The h2load command of one load: one request in flight per connection, one thread."""
    command = [h2load, "-D", f"{seconds:g}", "-c", str(connections), "-m", "1", "-t", "1"]
    if grpc:
        command += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    else:
        command += ["--h1", "-H", "content-type: application/json"]
    if log_file is not None:
        command += ["--log-file", str(log_file)]
    return [*command, "-d", str(body_file), url]


def latencies(log_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """HTTP statuses and latencies (ms) of every request in an h2load ``--log-file``.

    Its lines are ``start time (µs since the epoch) <TAB> status <TAB> duration (µs)``.
    """
    rows = np.loadtxt(log_file, dtype=np.int64, ndmin=2, usecols=(1, 2))
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    return rows[:, 0], rows[:, 1] / 1e3


def run_h2load(
    h2load: str,
    url: str,
    body_file: Path,
    seconds: float,
    *,
    grpc: bool,
    connections: int = CONNECTIONS,
) -> dict[str, float]:
    """One bounded h2load load; adds p50/p99 (ms) of all answers and the share of 503s."""
    log_file = body_file.with_name(body_file.name + ".h2load.log")
    command = h2load_command(
        h2load, url, body_file, seconds, grpc=grpc, connections=connections, log_file=log_file
    )
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 120
    ).stdout
    result = parse_h2load(out)
    statuses, ms = latencies(log_file)
    log_file.unlink(missing_ok=True)
    answered = len(statuses)
    ok = statuses == 200
    result["answered"] = float(answered)
    result["p50_ms"] = float(np.percentile(ms, 50)) if answered else float("nan")
    result["p99_ms"] = float(np.percentile(ms, 99)) if answered else float("nan")
    result["p99_ok_ms"] = float(np.percentile(ms[ok], 99)) if ok.any() else float("nan")
    result["share_503"] = float((statuses == 503).sum() / answered) if answered else 0.0
    result["other_non_2xx"] = float(((statuses != 200) & (statuses != 503)).sum())
    return result
