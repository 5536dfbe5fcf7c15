"""Serving speed on the seeds' workload: ``tfdeploy serve`` against every peer, in one run.

    .venv/bin/python benchmarks/serving.py [--seconds 10] [--rounds 2] [--quick]
        [--only tfdeploy,mlflow,bentoml,kserve,pytriton] [--output PATH]

What one run does (issue 12, point 1; benchmarks/README.md explains how to read the output):

1. Trains and exports two models in seconds (benchmarks/workload.py): the MNIST-shaped one
   (784 floats in, 10 probabilities out) and the 64-float digits one. Payload A is one
   MNIST-shaped instance per request, payload B 32, ``digits`` one 64-float instance; every
   server gets the same instances (the same ``{"instances": ...}`` bytes, or the same floats in
   the v2 protocol for Triton, which speaks nothing else).
2. Measures the in-process floor: the signature called directly on a ready tensor.
3. For every server (benchmarks/peers.py: ``tfdeploy serve``; MLflow, BentoML, KServe and
   PyTriton, each in its own ``benchmarks/.venv-<peer>`` made on first use) at its default
   settings and with 2 workers (or model instances): starts it on one model, checks that it
   answers the model's own probabilities, warms it up, loads it with ``wrk`` (32 connections,
   ``--latency``, a Lua script POSTing the body) and stops it. Only one server runs at a time.
4. On ``tfdeploy serve`` also: the do-nothing route ``/_noop`` with bodies A and B; gRPC
   ``Predict`` against REST predict on A and B, both driven by ``h2load`` (gRPC checked through
   the server's ``/metrics`` counters); and overload: 500 connections on predict for the same
   bounded time, reporting the p99 of answered requests, the share answered 503 and peak RSS.
5. Repeats 2-4 for ``--rounds`` interleaved rounds (the servers' order rotates), prints the
   median round with min-max, the ratios of issue 12 point 2 and the machine (cores, load by
   others, versions), and writes everything to benchmarks/results/serving.json.

Every server is stopped at the end of its turn, and on failure or Ctrl-C (benchmarks/servers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import workload
from loadgen import CONNECTIONS, ensure_tool, run_h2load, run_wrk, tool_version
from peers import PEERS, Peer, PeerUnavailable, Tfdeploy, check
from servers import (
    GRPC_OK,
    GRPC_PREDICT_PATH,
    MemoryPeak,
    Server,
    ServerError,
    StartError,
    exit_on_sigterm,
    grpc_predict,
    http,
    memory_mib,
    running,
    server_processes,
    settled_counters,
    stop_all,
    tfdeploy_options,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
OVERLOAD_CONNECTIONS = 500
WORKERS = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Row:
    """One server configuration: a peer at its default (workers None) or with ``workers``."""

    peer: Peer
    workers: int | None

    @property
    def key(self) -> str:
        """The row's key in the JSON results: ``kserve``, ``kserve@2``."""
        return self.peer.name if self.workers is None else f"{self.peer.name}@{self.workers}"


@dataclass
class Run:
    """What one run needs and what it measured."""

    seconds: float
    warmup: float
    workdir: Path
    h2load: str
    overload_connections: int
    models: dict[str, Path] = field(default_factory=dict)
    payloads: dict[str, workload.Payload] = field(default_factory=dict)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    grpc_requests: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def body(self, protocol: str, payload: workload.Payload) -> Path:
        """The file holding ``payload``'s body in ``protocol`` (``v1``, ``v2`` or ``grpc``)."""
        return self.workdir / f"body-{payload.name}.{protocol}"

    def record(self, row: str, column: str, measurement: dict[str, float], note: str) -> None:
        """Keep one round's measurement of a cell and print it."""
        self.measured.setdefault(row, {}).setdefault(column, []).append(measurement)
        if "p99_ms" in measurement:
            figures = f"{measurement['rps']:>9,.0f} req/s  p99 {measurement['p99_ms']:7.1f} ms"
        else:
            figures = f"{measurement['rps']:>9,.0f} calls/s{'':17}"
        print(f"  {row:<12} {column:<12} {figures}  {note}", flush=True)

    def fail(self, row: str, columns: list[str], message: str, round_index: int) -> None:
        """Note the cells that could not be measured in this round (of ``columns``), and why."""
        measured = self.measured.get(row, {})
        columns = [c for c in columns if len(measured.get(c, [])) <= round_index]
        for column in columns:
            self.errors.setdefault(row, {})[column] = message
        first = message.splitlines()[0] if message else ""
        print(f"  {row:<12} {','.join(columns):<12} FAILED: {first}", flush=True)


# --- CPU accounting: how much of the machine others used during a measurement --------------


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def _own_jiffies(server: Server) -> int:
    total = 0
    pids = [os.getpid(), *server_processes(server)]
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total


def measure(server: Server, load: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run ``load`` against ``server``; add peak memory and the CPU that other processes used."""
    busy, own, start = _busy_jiffies(), _own_jiffies(server), time.monotonic()
    with MemoryPeak(server) as memory:
        result = load()
    elapsed = time.monotonic() - start
    others = (_busy_jiffies() - busy) - (_own_jiffies(server) - own)
    result["peak_rss_mib"] = memory.rss
    result["peak_pss_mib"] = memory.pss
    result["others_cores"] = max(others, 0) / CLOCK_TICKS / elapsed
    return result


def cpu_busy(seconds: float = 3.0) -> float:
    """Cores busy on the whole machine over ``seconds`` (before and after the run)."""
    before, start = _busy_jiffies(), time.monotonic()
    time.sleep(seconds)
    return (_busy_jiffies() - before) / CLOCK_TICKS / (time.monotonic() - start)


# --- one server's turn --------------------------------------------------------------------


def wrk_cell(run: Run, server: Server, url: str, body: Path) -> dict[str, float]:
    """Warm up, then one measured wrk load."""
    run_wrk(url, body, run.warmup)
    return measure(server, lambda: run_wrk(url, body, run.seconds))


def serve_model(run: Run, row: Row, model: str) -> None:
    """Start ``row``'s server on ``model``, check and measure its payloads, stop it."""
    peer = row.peer
    columns = [p for p in run.payloads.values() if p.model == model]

    def start() -> Server:
        return peer.start(run.models[model], model, row.workers, run.workdir)

    with running(start) as server:
        url = peer.predict_url(server, model)
        for payload in columns:
            body = run.body(peer.protocol, payload)
            status, raw = http(url, body.read_bytes(), timeout=120)
            check(peer, status, raw, run.references[payload.name])
            m = wrk_cell(run, server, url, body)
            m["instances_per_s"] = m["rps"] * payload.count
            run.record(row.key, payload.name, m, f"{m['peak_pss_mib']:,.0f} MiB")
        if isinstance(peer, Tfdeploy):
            for payload in columns:
                body = run.body("v1", payload)
                status, raw = http(server.url + "/_noop", body.read_bytes())
                if status != 200:
                    raise ServerError(f"/_noop answered {status}: {raw[:200]!r}")
                m = wrk_cell(run, server, server.url + "/_noop", body)
                m["instances_per_s"] = m["rps"] * payload.count
                run.record(row.key, f"noop-{payload.name}", m, "do-nothing route")
            if model == "mnist":
                tfdeploy_extras(run, row, server)


def tfdeploy_extras(run: Run, row: Row, server: Server) -> None:
    """gRPC against REST (both h2load) and overload, on tfdeploy's MNIST-shaped server."""
    predict = row.peer.predict_url(server, "mnist")
    single = row.workers is None or row.workers == 1
    for name in ("A", "B"):
        payload, body = run.payloads[name], run.body("v1", run.payloads[name])

        def rest(seconds: float, body: Path = body) -> dict[str, float]:
            return run_h2load(run.h2load, predict, body, seconds, grpc=False)

        rest(run.warmup)
        m = measure(server, lambda: rest(run.seconds))
        if m["ok_2xx"] != m["done"] or m["failed"]:
            raise ServerError(f"REST predict {name} under h2load: not every answer was 2xx: {m}")
        m["instances_per_s"] = m["rps"] * payload.count
        run.record(row.key, f"h2-rest-{name}", m, "h2load --h1")

        grpc_body = run.body("grpc", payload)
        grpc_url = f"http://{server.grpc_address}{GRPC_PREDICT_PATH}"
        probs = np.asarray(grpc_predict(server.grpc_address, run.grpc_requests[name]), np.float64)
        if probs.shape != run.references[name].shape or not np.allclose(
            probs, run.references[name], atol=1e-4
        ):
            raise ServerError(f"gRPC Predict {name} did not answer the model's probabilities")

        def grpc(seconds: float, body: Path = grpc_body, url: str = grpc_url) -> dict[str, float]:
            return run_h2load(run.h2load, url, body, seconds, grpc=True)

        grpc(run.warmup)
        # Calls of the warm-up still in flight when it ended must not count in this window.
        before = settled_counters(server.url) if single else {}
        m = measure(server, lambda: grpc(run.seconds))
        if single:
            # gRPC errors travel as HTTP 200 with a grpc-status trailer: count on the server.
            after = settled_counters(server.url)
            delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            ok = delta.get(GRPC_OK, 0.0)
            errors = sum(v for k, v in delta.items() if k.startswith("errors"))
            if not m["done"] <= ok <= m["started"] or m["failed"] or errors:
                raise ServerError(
                    f"gRPC {name}: h2load finished {m['done']:.0f} calls, the server answered "
                    f"{ok:.0f} OK and counted {errors:.0f} errors"
                )
            m["server_ok"] = ok
        m["instances_per_s"] = m["rps"] * payload.count
        run.record(row.key, f"h2-grpc-{name}", m, "h2load h2c")
    for name in ("A", "B"):
        body = run.body("v1", run.payloads[name])

        def overload(body: Path = body) -> dict[str, float]:
            return run_h2load(
                run.h2load,
                predict,
                body,
                run.seconds,
                grpc=False,
                connections=run.overload_connections,
            )

        idle_rss, idle_pss = memory_mib(server)
        m = measure(server, overload)
        m["idle_rss_mib"], m["idle_pss_mib"] = idle_rss, idle_pss
        m["answered_per_s"] = m["answered"] / run.seconds
        m["ok_per_s"] = m["ok_2xx"] / run.seconds
        status, raw = http(predict, body.read_bytes(), timeout=60)
        check(row.peer, status, raw, run.references[name])  # still answers right afterwards
        run.record(row.key, f"overload-{name}", m, f"{m['share_503']:.1%} answered 503")


def one_round(run: Run, rows: list[Row], index: int, rounds: int) -> None:
    """Measure the floor, then every row once, in an order rotated by the round's index."""
    print(f"\n== round {index + 1} of {rounds}", flush=True)
    for name in ("A", "B"):
        payload = run.payloads[name]
        m = workload.floor(run.models["mnist"], payload.instances, min(run.seconds, 3.0))
        m["rps"] = 1e6 / m["us_per_call"]
        run.record("floor", name, m, f"{m['us_per_call']:.0f} µs per call")
    shift = index % len(rows) if rows else 0
    for row in rows[shift:] + rows[:shift]:
        if row.key in run.broken:
            continue
        for model in ("mnist", "digits"):
            columns = [p.name for p in run.payloads.values() if p.model == model]
            if isinstance(row.peer, Tfdeploy):
                columns += [f"noop-{c}" for c in columns]
            if isinstance(row.peer, Tfdeploy) and model == "mnist":
                columns += [
                    f"{kind}-{n}" for kind in ("h2-rest", "h2-grpc", "overload") for n in "AB"
                ]
            for attempt in (1, 2):
                try:
                    serve_model(run, row, model)
                except StartError as exc:
                    # A start can fail once on a busy machine (KServe, for one, kills a worker
                    # that is slow to answer its pings while it imports TensorFlow): try again,
                    # and give the row up only if it fails twice.
                    if attempt == 1:
                        first = str(exc).splitlines()[0]
                        print(f"  {row.key:<12} did not start ({first}); trying again", flush=True)
                        continue
                    run.fail(row.key, columns, f"round {index + 1}: {exc}", index)
                    run.broken[row.key] = str(exc)
                except (ServerError, RuntimeError, subprocess.SubprocessError, OSError) as exc:
                    run.fail(row.key, columns, f"round {index + 1}: {exc}", index)
                break
            if row.key in run.broken:
                break


# --- summary ------------------------------------------------------------------------------


def summarize(measurements: list[dict[str, float]]) -> dict[str, float]:
    """The median of every figure over the rounds (with 2 rounds: their mean), min-max req/s."""
    keys = set.intersection(*(set(m) for m in measurements))
    out = {k: float(statistics.median(m[k] for m in measurements)) for k in sorted(keys)}
    out["min_rps"] = min(m["rps"] for m in measurements)
    out["max_rps"] = max(m["rps"] for m in measurements)
    out["rounds"] = float(len(measurements))
    for k in ("non_2xx", "socket_errors"):
        if k in keys:
            out[f"total_{k}"] = float(sum(m[k] for m in measurements))
    return out


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:,.{digits}f}"


def _rps(cell: dict[str, float] | None, key: str = "rps", scale: float = 1.0) -> str:
    if not cell:
        return "—"
    text = _n(cell[key])
    if cell.get("rounds", 1) > 1:
        text += f" ({_n(cell['min_rps'] * scale)}–{_n(cell['max_rps'] * scale)})"
    return text


def _p99(cell: dict[str, float] | None) -> str:
    if not cell:
        return "—"
    digits = 1 if cell["p99_ms"] < 100 else 0
    return _n(cell["p99_ms"], digits)


def main_table(summary: dict[str, dict[str, dict[str, float]]], rows: list[Row]) -> list[str]:
    """Issue 12 point 1's table as markdown lines."""
    lines = [
        "| server (workers) | A req/s | A p99 ms | B req/s | B instances/s | B p99 ms "
        "| digits req/s | digits p99 ms | peak PSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for row in rows:
        cells = summary.get(row.key, {})
        label = row.peer.row_label(row.workers)
        if not cells:
            lines.append(f"| {label} | not measured, see below | | | | | | | |")
            continue
        a, b, d = cells.get("A"), cells.get("B"), cells.get("digits")
        bad = [
            f"{col}: {c.get('total_non_2xx', 0):.0f} non-2xx, "
            f"{c.get('total_socket_errors', 0):.0f} socket errors"
            for col, c in cells.items()
            if c.get("total_non_2xx") or c.get("total_socket_errors")
        ]
        if bad:
            notes.append(f"{label}: " + "; ".join(bad))
            label += f" [{len(notes)}]"
        memory = max((c.get("peak_pss_mib", 0.0) for c in (a, b, d) if c), default=float("nan"))
        lines.append(
            f"| {label} | {_rps(a)} | {_p99(a)} | {_rps(b)} | "
            f"{_rps(b, 'instances_per_s', 32) if b else '—'} | {_p99(b)} | {_rps(d)} | {_p99(d)} "
            f"| {_n(memory)} |"
        )
        if isinstance(row.peer, Tfdeploy):
            na, nb, nd = cells.get("noop-A"), cells.get("noop-B"), cells.get("noop-digits")
            if na or nb or nd:
                lines.append(
                    f"| ↳ same server, do-nothing route `/_noop` (parses the body) | {_rps(na)} | "
                    f"{_p99(na)} | {_rps(nb)} | — | {_p99(nb)} | {_rps(nd)} | {_p99(nd)} | |"
                )
    floor = summary.get("floor", {})
    if floor:
        fa, fb = floor.get("A"), floor.get("B")
        lines.append(
            "| the signature called in-process on a ready tensor (the floor) "
            f"| {_n(fa['us_per_call'] if fa else None)} µs per call "
            f"= {_n(fa['instances_per_s'] if fa else None)} instances/s | — "
            f"| {_n(fb['us_per_call'] if fb else None)} µs per 32 instances | "
            f"{_n(fb['instances_per_s'] if fb else None)} | — | — | — | |"
        )
    for i, note in enumerate(notes, 1):
        lines.append(f"\n[{i}] {note}")
    return lines


def grpc_table(summary: dict[str, dict[str, dict[str, float]]], key: str) -> list[str]:
    """gRPC ``Predict`` against REST predict, both driven by h2load (32 connections)."""
    cells = summary.get(key, {})
    lines = [
        "| tfdeploy, h2load, 32 connections | req/s | instances/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("A", "B"):
        for kind, label in (
            ("h2-rest", "REST predict (HTTP/1.1)"),
            ("h2-grpc", "gRPC Predict (h2c)"),
        ):
            c = cells.get(f"{kind}-{name}")
            if c:
                lines.append(
                    f"| {label}, payload {name} | {_rps(c)} | {_n(c['instances_per_s'])} | "
                    f"{_n(c['p50_ms'], 1)} | {_n(c['p99_ms'], 1)} |"
                )
    return lines


def overload_table(
    summary: dict[str, dict[str, dict[str, float]]], key: str, connections: int
) -> list[str]:
    """Overload: many connections on predict for a bounded time."""
    cells = summary.get(key, {})
    lines = [
        f"| tfdeploy predict, {connections} connections (h2load --h1) | answered/s | 200s/s "
        "| p99 of answered ms | p99 of 200s ms | answered 503 | other non-2xx | not answered "
        "| RSS idle → peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("A", "B"):
        c = cells.get(f"overload-{name}")
        if c:
            lines.append(
                f"| payload {name} | {_n(c['answered_per_s'])} | {_n(c['ok_per_s'])} "
                f"| {_n(c['p99_ms'], 1)} | {_n(c['p99_ok_ms'], 1)} | {c['share_503']:.1%} "
                f"| {_n(c['other_non_2xx'])} | {_n(c['started'] - c['answered'])} "
                f"| {_n(c['idle_rss_mib'])} → {_n(c['peak_rss_mib'])} |"
            )
    return lines


def ratios(
    summary: dict[str, dict[str, dict[str, float]]], rows: list[Row]
) -> list[dict[str, Any]]:
    """Issue 12 point 2's ratios, for every tfdeploy row, with their goals."""
    peers = [r for r in rows if not isinstance(r.peer, Tfdeploy)]

    def fastest(column: str) -> Row | None:
        measured = [r for r in peers if column in summary.get(r.key, {})]
        return max(measured, key=lambda r: summary[r.key][column]["rps"], default=None)

    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, ok: bool | None, detail: str) -> None:
        out.append({"ratio": name, "value": value, "goal": goal, "met": ok, "detail": detail})

    floor_b = summary.get("floor", {}).get("B")
    for row in rows:
        if not isinstance(row.peer, Tfdeploy) or row.key not in summary:
            continue
        cells = summary[row.key]
        who = row.peer.row_label(row.workers)
        a, b, noop = cells.get("A"), cells.get("B"), cells.get("noop-A")
        if a and noop:
            v = a["rps"] / noop["rps"]
            add(
                f"{who}: A predict / do-nothing route",
                v,
                "≥ 0.6",
                v >= 0.6,
                f"{_n(a['rps'])} / {_n(noop['rps'])} req/s",
            )
        peer_a = fastest("A")
        if a and peer_a:
            pa = summary[peer_a.key]["A"]
            v = a["rps"] / pa["rps"]
            label = peer_a.peer.row_label(peer_a.workers)
            add(
                f"{who}: A req/s / fastest peer's ({label})",
                v,
                "≥ 3",
                v >= 3,
                f"{_n(a['rps'])} / {_n(pa['rps'])} req/s",
            )
            v = a["p99_ms"] / pa["p99_ms"]
            add(
                f"{who}: A p99 / that peer's p99",
                v,
                "≤ 0.25",
                v <= 0.25,
                f"{_n(a['p99_ms'], 1)} / {_n(pa['p99_ms'], 1)} ms",
            )
        if b and floor_b:
            v = b["instances_per_s"] / floor_b["instances_per_s"]
            add(
                f"{who}: B instances/s / in-process floor",
                v,
                "≥ 0.4",
                v >= 0.4,
                f"{_n(b['instances_per_s'])} / {_n(floor_b['instances_per_s'])} instances/s",
            )
        peer_b = fastest("B")
        if b and peer_b:
            pb = summary[peer_b.key]["B"]
            v = b["rps"] / pb["rps"]
            label = peer_b.peer.row_label(peer_b.workers)
            add(
                f"{who}: B req/s / fastest peer's ({label})",
                v,
                "≥ 3",
                v >= 3,
                f"{_n(b['rps'])} / {_n(pb['rps'])} req/s",
            )
        for name, goal in (("A", 0.8), ("B", 1.0)):
            g, r = cells.get(f"h2-grpc-{name}"), cells.get(f"h2-rest-{name}")
            if g and r:
                v = g["rps"] / r["rps"]
                add(
                    f"{who}: gRPC / REST on {name} (both h2load)",
                    v,
                    f"≥ {goal:g}",
                    v >= goal,
                    f"{_n(g['rps'])} / {_n(r['rps'])} req/s",
                )
        # For continuity with the 64-float benchmarks before issue 12 (issue 3's goals).
        d, nd = cells.get("digits"), cells.get("noop-digits")
        if d and nd:
            v = d["rps"] / nd["rps"]
            add(
                f"{who}: digits predict / do-nothing route (64 floats, as before)",
                v,
                "≥ 0.6",
                v >= 0.6,
                f"{_n(d['rps'])} / {_n(nd['rps'])} req/s",
            )
        ml = summary.get("mlflow", {}).get("digits")
        if d and ml:
            v = d["rps"] / ml["rps"]
            add(
                f"{who}: digits req/s / MLflow's at its default (as before)",
                v,
                "≥ 10",
                v >= 10,
                f"{_n(d['rps'])} / {_n(ml['rps'])} req/s",
            )
    return out


# --- machine ------------------------------------------------------------------------------


def machine(peers: list[Peer], h2load: str) -> dict[str, Any]:
    """Cores, memory, kernel and the versions of everything measured."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        "",
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "checkout": commit,
        "wrk": tool_version(["wrk", "-v"]),
        "h2load": tool_version([h2load, "--version"]),
        "versions": {p.name: p.versions for p in peers},
    }


def print_machine(info: dict[str, Any]) -> None:
    """The machine block of the output."""
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, Linux "
        f"{info['kernel']}, Python {info['python']}, checkout {info['checkout']}"
    )
    print(f"load generators: {info['wrk']}; {info['h2load']}")
    for name, v in info["versions"].items():
        print(f"  {name:<9} " + ", ".join(f"{k} {val}" for k, val in v.items()))


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, help="load per measurement, whole seconds (10; --quick: 3)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (2; --quick: 1)")
    parser.add_argument(
        "--warmup", type=int, help="warm-up load before each measurement (2 s; --quick: 1)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few seconds per cell")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated servers to run: tfdeploy,mlflow,bentoml,kserve,pytriton (all)",
    )
    parser.add_argument(
        "--overload-connections", type=int, default=OVERLOAD_CONNECTIONS, help="(500)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    args = parser.parse_args()
    seconds = args.seconds or (3 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 2)
    warmup = args.warmup or (1 if args.quick else 2)
    if seconds < 1 or warmup < 1 or rounds < 1:
        parser.error("--seconds, --warmup and --rounds must be at least 1")
    known = ["tfdeploy", *(p.name for p in PEERS)]
    only = [s.strip() for s in args.only.split(",") if s.strip()] or known
    if unknown := sorted(set(only) - set(known)):
        parser.error(f"unknown servers {unknown}; choose from {','.join(known)}")

    exit_on_sigterm()
    ensure_tool("wrk", "wrk")
    h2load = ensure_tool("h2load", "nghttp2-client")
    busy_before = cpu_busy()
    print(f"machine busy before the run: {busy_before:.2f} of {os.cpu_count()} cores", flush=True)

    from tfdeploy.predict import _tf

    tf_version = _tf.tensorflow().__version__
    has_workers = "--workers" in tfdeploy_options()
    tfdeploy = Tfdeploy(has_workers)
    peers: list[Peer] = [tfdeploy] if "tfdeploy" in only else []
    peers += [cls() for cls in PEERS if cls.name in only]
    unavailable: dict[str, str] = {}
    rows: list[Row] = []
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="tfdeploy-serving-bench-") as tmp:
            run = Run(seconds, warmup, Path(tmp), h2load, args.overload_connections)
            print("==> training and exporting the models", flush=True)
            run.models = workload.build_models(run.workdir)
            run.payloads = workload.payloads()
            for payload in run.payloads.values():
                run.references[payload.name] = workload.reference(
                    run.models[payload.model], payload.instances
                )
                run.body("v1", payload).write_bytes(payload.v1_body())
                run.body("v2", payload).write_bytes(payload.v2_body())
                frame, request = payload.grpc_frame("default")
                run.body("grpc", payload).write_bytes(frame)
                run.grpc_requests[payload.name] = request
            for peer in peers:
                try:
                    peer.install(tf_version)
                    peer.prepare(run.models, run.workdir)
                except (PeerUnavailable, subprocess.SubprocessError, OSError) as exc:
                    unavailable[peer.name] = str(exc)
                    print(f"==> {peer.name} cannot run here:\n{exc}", flush=True)
                    continue
                rows.append(Row(peer, None))
                if not isinstance(peer, Tfdeploy) or has_workers:
                    rows.append(Row(peer, WORKERS))
            if "tfdeploy" in only and not has_workers:
                unavailable["tfdeploy@2"] = (
                    "this checkout's `tfdeploy serve` has no --workers option"
                )
            info = machine([p for p in peers if p.name not in unavailable], h2load)
            print_machine(info)
            for index in range(rounds):
                one_round(run, rows, index, rounds)
    finally:
        stop_all()
    busy_after = cpu_busy()

    summary = {
        row: {col: summarize(ms) for col, ms in cols.items()} for row, cols in run.measured.items()
    }
    table = main_table(summary, rows)
    found = ratios(summary, rows)
    print(
        f"\n== results: wrk, {CONNECTIONS} connections, {seconds:g} s per cell after {warmup:g} s "
        f"of warm-up, {rounds} interleaved round(s): median round (min–max req/s)\n"
    )
    print_machine(info)
    others = [
        m.get("others_cores", 0.0)
        for cols in run.measured.values()
        for ms in cols.values()
        for m in ms
    ]
    if others:
        print(
            f"other processes' CPU during the measurements: median {statistics.median(others):.2f}, "
            f"max {max(others):.2f} cores; whole machine busy {busy_before:.2f} cores before the run, "
            f"{busy_after:.2f} after"
        )
    print()
    print("\n".join(table))
    if "tfdeploy" in summary:
        print()
        print("\n".join(grpc_table(summary, "tfdeploy")))
        print()
        print("\n".join(overload_table(summary, "tfdeploy", args.overload_connections)))
    print("\nratios (issue 12 point 2):")
    for r in found:
        verdict = {True: "met", False: "NOT met", None: ""}[r["met"]]
        print(f"  {r['ratio']}: {r['value']:.2f} (goal {r['goal']}: {verdict}; {r['detail']})")
    problems = {**unavailable}
    for row, cols in run.errors.items():
        by_message: dict[str, list[str]] = {}
        for col, message in cols.items():
            by_message.setdefault(message, []).append(col)
        for message, cols_failed in by_message.items():
            problems[f"{row} {','.join(cols_failed)}"] = message
    if problems:
        print("\nnot measured:")
        for key, message in problems.items():
            print(f"  {key}: " + message.replace("\n", "\n    "))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload_sizes = {
        p.name: {
            "model": p.model,
            "instances": p.count,
            "v1_body_bytes": len(p.v1_body()),
            "v2_body_bytes": len(p.v2_body()),
        }
        for p in run.payloads.values()
    }
    args.output.write_text(
        json.dumps(
            {
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "settings": {
                    "seconds": seconds,
                    "warmup": warmup,
                    "rounds": rounds,
                    "connections": CONNECTIONS,
                    "overload_connections": args.overload_connections,
                },
                "machine": {
                    **info,
                    "busy_cores_before": busy_before,
                    "busy_cores_after": busy_after,
                },
                "payloads": payload_sizes,
                "rows": {row.key: row.peer.row_label(row.workers) for row in rows},
                "summary": summary,
                "rounds": run.measured,
                "ratios": found,
                "table": table,
                "not_measured": problems,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    print(f"\nresults written to {args.output}")


if __name__ == "__main__":
    main()
