"""Starting, checking and stopping the servers a benchmark measures.

Every server is started in a session of its own (``start_new_session``), so that stopping it
reaches every process it made (uvicorn workers, Triton's C++ server and its Python stubs,
BentoML's workers, which circus puts in sessions of their own, found by parentage): SIGTERM to
the server's own process, then SIGTERM and SIGKILL to whatever is left of them. A server that is
still running when the benchmark ends, fails or is interrupted is stopped by :func:`stop_all`,
which the benchmarks call in a ``finally`` (and on SIGTERM, through :func:`exit_on_sigterm`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class ServerError(Exception):
    """A server did not answer as it must; the message says why."""


class StartError(ServerError):
    """A server did not start; the message says why, with the end of its log."""


@dataclass
class Server:
    """A running server: its process (leader of its own session), base URL and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    grpc_address: str = ""
    #: Folders the server leaves behind when it stops, removed by :func:`stop`.
    leftovers: list[Path] = field(default_factory=list)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


_RUNNING: list[Server] = []


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    url: str,
    body: bytes | None = None,
    timeout: float = 30.0,
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    """One HTTP request (POST when ``body`` is given); returns the status and the body."""
    request = urllib.request.Request(url, data=body)
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def launch(
    name: str,
    command: list[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    """Start ``command`` in a session of its own, its output going to ``log``.

    The server is noted as running at once (its URL is filled in by the caller), so that
    :func:`stop_all` stops it even if the benchmark fails while it starts.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    server = Server(name, proc, "", log)
    _RUNNING.append(server)
    return server


def wait_ready(server: Server, path: str, limit: float = 120.0) -> None:
    """Wait until ``GET url+path`` answers 200; else stop the server and raise with its log."""
    try:
        _wait_ready(server, path, limit)
    except BaseException:
        stop(server)
        raise


def _wait_ready(server: Server, path: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise StartError(
                f"{server.name} exited with code {server.proc.returncode} before it was ready:\n"
                + server.log_tail()
            )
        try:
            status, _ = http(server.url + path, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise StartError(f"{server.name} was not ready within {limit:.0f} s:\n" + server.log_tail())


def _processes() -> dict[int, tuple[int, int, int]]:
    """Every process as ``pid: (parent pid, session id, start time)`` from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[1] is stat's 4th field (parent pid), [3] the 6th (session), [19] the 22nd (start)
        table[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[19]))
    return table


def server_processes(server: Server) -> dict[int, int]:
    """The processes of ``server`` as ``pid: start time``: its session and its descendants.

    Both, because some servers start workers in sessions of their own (BentoML's circus does).
    """
    table = _processes()
    leader = server.proc.pid
    found = {pid for pid, (_, sid, _) in table.items() if sid == leader}
    if leader in table:
        found.add(leader)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid: table[pid][2] for pid in found}


def command_lines(server: Server) -> list[list[str]]:
    """The command lines of the server's processes."""
    lines = []
    for pid in server_processes(server):
        with suppress(OSError):
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            lines.append([part.decode(errors="replace") for part in raw.split(b"\0") if part])
    return lines


def _signal_alive(known: dict[int, int], signum: int) -> int:
    """Send ``signum`` to the processes of ``known`` still alive (same pid and start time)."""
    table = _processes()
    alive = [pid for pid, start in known.items() if pid in table and table[pid][2] == start]
    for pid in alive:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)
    return len(alive)


def stop(server: Server, grace: float = 20.0) -> None:
    """Stop ``server`` and every process it started: SIGTERM, then SIGKILL after ``grace``.

    The server's processes are listed before any signal (a parent's death hides its
    children's lineage). SIGTERM goes to the server's own process first, as a container
    runtime would send it, so that it shuts its workers down and cleans up after itself; whatever
    of the list is still alive afterwards gets SIGTERM, then SIGKILL.
    """
    known = server_processes(server)
    if server.proc.poll() is None:
        server.proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            server.proc.wait(grace)
    known.update(server_processes(server))
    deadline = time.monotonic() + 5
    while _signal_alive(known, signal.SIGTERM) and time.monotonic() < deadline:
        time.sleep(0.5)
    _signal_alive(known, signal.SIGKILL)
    if server.proc.poll() is None:
        server.proc.kill()
    server.proc.wait()
    for folder in server.leftovers:
        shutil.rmtree(folder, ignore_errors=True)
    if server in _RUNNING:
        _RUNNING.remove(server)


def stop_all() -> None:
    """Stop every server still running."""
    for server in list(_RUNNING):
        stop(server)


@contextmanager
def running(start: Callable[[], Server]) -> Iterator[Server]:
    """Start a server with ``start``; stop it (and its session) on leaving, whatever happens."""
    server = start()
    try:
        yield server
    finally:
        stop(server)


def exit_on_sigterm() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so that ``finally`` blocks stop the servers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


# --- memory -------------------------------------------------------------------------------


def _memory_kib(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process in KiB (0, 0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    rss = re.search(r"^Rss:\s+(\d+)", text, re.M)
    pss = re.search(r"^Pss:\s+(\d+)", text, re.M)
    return (int(rss.group(1)) if rss else 0, int(pss.group(1)) if pss else 0)


def memory_mib(server: Server) -> tuple[float, float]:
    """RSS and PSS summed over the server's processes, in MiB (PSS counts shared pages once)."""
    rss = pss = 0
    for pid in server_processes(server):
        r, p = _memory_kib(pid)
        rss += r
        pss += p
    return rss / 1024, pss / 1024


class MemoryPeak:
    """Samples a server's memory on a thread while a load runs; keeps the peaks (MiB)."""

    def __init__(self, server: Server, every: float = 0.25) -> None:
        self.server = server
        self.every = every
        self.rss = self.pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = memory_mib(self.server)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self._stop.wait(self.every)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- tfdeploy -----------------------------------------------------------------------------


def tfdeploy_options() -> str:
    """The text of ``tfdeploy serve --help`` (to learn which options this checkout has)."""
    return subprocess.run(
        [sys.executable, "-m", "tfdeploy", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def start_tfdeploy(
    model: Path, log: Path, extra: list[str] | None = None, grpc: bool = True
) -> Server:
    """``tfdeploy serve`` of this checkout on free ports (REST, and gRPC unless told not to)."""
    command = [sys.executable, "-m", "tfdeploy", "serve", str(model), "--port", "0"]
    if grpc:
        command += ["--grpc-port", "0"]
    server = launch("tfdeploy", [*command, *(extra or [])], log, env={"PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.proc.poll() is None:
        text = log.read_text(errors="replace")
        url = re.search(r"Starting server under (\S+) ", text)
        address = re.search(r"gRPC: (\S+)", text)
        if url and (address or not grpc) and "Docs:" in text:
            server.url = url.group(1).rstrip("/")
            server.grpc_address = address.group(1) if address else ""
            return server
        time.sleep(0.2)
    stop(server)
    raise StartError("tfdeploy serve did not start:\n" + server.log_tail())


_COUNTER = re.compile(r"^tfdeploy_(requests|errors)_total\{(.*)\} ([\d.e+]+)$", re.M)
GRPC_OK = 'requests{protocol="grpc",route="Predict",status="OK"}'
GRPC_PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


def counters(url: str) -> dict[str, float]:
    """tfdeploy's request and error counters from ``/metrics``, by their label text."""
    status, raw = http(url + "/metrics", timeout=10)
    if status != 200:
        raise ServerError(f"/metrics answered {status}")
    return {f"{kind}{{{labels}}}": float(v) for kind, labels, v in _COUNTER.findall(raw.decode())}


def settled_counters(url: str, limit: float = 10.0) -> dict[str, float]:
    """tfdeploy's counters once two reads 0.3 s apart agree (calls still in flight are done)."""
    last = counters(url)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = counters(url)
        if now == last:
            return now
        last = now
    return last


def grpc_predict(address: str, request: Any) -> Any:
    """One ``Predict`` call through grpcio's stub: the answer's output ``prediction`` as numpy."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answer = stub.Predict(request, timeout=30)
    return tf.make_ndarray(answer.outputs["prediction"])
