"""`tfdeploy serve` against `mlflow models serve` and against its own do-nothing route.

    .venv/bin/python benchmarks/server_vs_mlflow.py [--seconds 10] [--rounds 2] [--no-mlflow]

One run, one machine, loopback only, bounded in time:

1. The digits SavedModel is exported once. `tfdeploy serve` serves it (REST and gRPC);
   `mlflow models serve` serves the same SavedModel through a pyfunc wrapper that calls its
   signature (MLflow lives in its own environment, benchmarks/.venv-mlflow, created here on
   first use with the same TensorFlow version; both servers run with their default settings).
2. The same single-instance body, ``{"instances": [[64 floats]]}``, is sent by ``wrk`` (Debian's,
   when installed; else a Python asyncio client) with 32 connections for ``--seconds`` to:
   MLflow's ``/invocations``, tfdeploy's ``/serving_default/predict``, and tfdeploy's
   ``/_noop``, which parses the same body and answers without predicting. Rounds interleave
   the three; the median round is reported.
3. gRPC ``Predict`` and REST predict are compared with one Python asyncio load generator (32
   concurrent callers each), since wrk speaks no gRPC. benchmarks/server_grpc_vs_rest.py
   compares them with one C load generator (h2load) for both.

Goals (issue 3): tfdeploy ≥ 10× MLflow's requests/s with p99 ≤ ¼ of MLflow's; predict ≥ 60% of
the do-nothing route; gRPC at least as fast as REST. Results also go to
benchmarks/results/server_vs_mlflow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VENV = ROOT / "benchmarks" / ".venv-mlflow"
CONNECTIONS = 32

PYFUNC_WRITER = r'''
import sys
import mlflow.pyfunc
import numpy as np


class SavedModelWrapper(mlflow.pyfunc.PythonModel):
    """Calls the SavedModel's serving_default signature on the instances."""

    def load_context(self, context):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(context.artifacts["savedmodel"])
        self.fn = self.loaded.signatures["serving_default"]

    def predict(self, context, model_input, params=None):
        import tensorflow as tf

        x = np.asarray(model_input, dtype=np.float32).reshape(-1, 64)
        return self.fn(image=tf.constant(x))["prediction"].numpy()


mlflow.pyfunc.save_model(
    sys.argv[2], python_model=SavedModelWrapper(), artifacts={"savedmodel": sys.argv[1]}
)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {limit:.0f} s")


def ensure_mlflow_env() -> Path:
    python = MLFLOW_VENV / "bin" / "python"
    if (MLFLOW_VENV / "bin" / "mlflow").exists():
        return python
    import tensorflow as tf

    print(
        f"==> creating {MLFLOW_VENV} with mlflow and tensorflow=={tf.__version__} (once)",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "mlflow",
            f"tensorflow=={tf.__version__}",
        ],
        check=True,
    )
    return python


# --- load generators ----------------------------------------------------------------------


def parse_wrk(text: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: .*", text)
    return {
        "rps": rps,
        "p99_ms": p99,
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def run_wrk(url: str, body: bytes, seconds: float, workdir: Path) -> dict[str, float]:
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
        'wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return parse_wrk(out)


async def _http_caller(
    host: str,
    port: int,
    path: str,
    body: bytes,
    until: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if b" 200 " not in status_line:
                errors.append(1)
    finally:
        writer.close()


async def _grpc_caller(
    stub: Any, request: Any, until: float, latencies: list[float], errors: list[int]
) -> None:
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            await stub.Predict(request, timeout=30)
        except Exception:
            errors.append(1)
        latencies.append(time.perf_counter() - start)


def _summary(latencies: list[float], errors: list[int], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))] if ordered else float("nan")
    return {
        "rps": len(latencies) / seconds,
        "p99_ms": p99 * 1e3,
        "non_2xx": float(len(errors)),
        "socket_errors": 0.0,
    }


def run_python_http(url: str, body: bytes, seconds: float) -> dict[str, float]:
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    assert m
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _http_caller(host, port, path, body, until, latencies, errors)
                for _ in range(CONNECTIONS)
            )
        )

    asyncio.run(main())
    return _summary(latencies, errors, seconds)


def run_python_grpc(address: str, instance: list[float], seconds: float) -> dict[str, float]:
    import grpc
    import numpy as np

    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.array([instance], np.float32)))
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            until = time.perf_counter() + seconds
            await asyncio.gather(
                *(_grpc_caller(stub, request, until, latencies, errors) for _ in range(CONNECTIONS))
            )

    asyncio.run(main())
    return _summary(latencies, errors, seconds)


# --- servers ------------------------------------------------------------------------------


def start_tfdeploy(
    model: Path, extra: list[str] | None = None
) -> tuple[subprocess.Popen[str], str, str]:
    """``tfdeploy serve`` on free ports; returns the process, its URL and gRPC address."""
    command = [sys.executable, "-m", "tfdeploy", "serve", str(model), "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--grpc-port", "0", *(extra or [])],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    url = grpc_address = ""
    for line in proc.stdout:
        if m := re.match(r"Starting server under (\S+) ", line):
            url = m.group(1)
        if m := re.match(r"gRPC: (\S+)", line):
            grpc_address = m.group(1)
        if line.startswith("Docs:"):
            break
    if not url or not grpc_address:
        raise SystemExit("tfdeploy serve did not start")
    return proc, url, grpc_address


def start_mlflow(model: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    python = ensure_mlflow_env()
    pyfunc = workdir / "pyfunc"
    writer = workdir / "write_pyfunc.py"
    writer.write_text(PYFUNC_WRITER)
    subprocess.run(
        [str(python), str(writer), str(model), str(pyfunc)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = free_port()
    log = open(workdir / "mlflow.log", "wb")  # noqa: SIM115  (kept open for the process)
    proc = subprocess.Popen(
        [
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(pyfunc),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # MLflow starts `uvicorn` from PATH: its own environment's.
        env={**os.environ, "PATH": f"{MLFLOW_VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ping")
    return proc, url


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow baseline")
    args = parser.parse_args()

    from tfdeploy.examples.digits import load_digits, train
    from tfdeploy.predict.export import export_savedmodel

    images, _ = load_digits()
    instance = [float(v) for v in images[0]]
    body = json.dumps({"instances": [instance]}).encode()
    use_wrk = shutil.which("wrk") is not None
    generator = "wrk" if use_wrk else "python-asyncio"

    with tempfile.TemporaryDirectory(prefix="tfdeploy-bench-") as tmp:
        workdir = Path(tmp)
        model = export_savedmodel(train(epochs=1), workdir / "savedmodel")
        servers: list[subprocess.Popen[Any]] = []
        try:
            ours, url, grpc_address = start_tfdeploy(model)
            servers.append(ours)
            targets = {
                "tfdeploy predict": url + "/serving_default/predict",
                "tfdeploy do-nothing": url + "/_noop",
            }
            if not args.no_mlflow:
                mlflow_proc, mlflow_url = start_mlflow(model, workdir)
                servers.append(mlflow_proc)
                targets = {"mlflow pyfunc": mlflow_url + "/invocations", **targets}

            def load(target_url: str, seconds: float) -> dict[str, float]:
                if use_wrk:
                    return run_wrk(target_url, body, seconds, workdir)
                return run_python_http(target_url, body, seconds)

            for target_url in targets.values():  # warm-up
                load(target_url, 2)
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            rounds["python REST predict"] = []
            rounds["python gRPC predict"] = []
            for r in range(args.rounds):
                for name, target_url in targets.items():
                    rounds[name].append(load(target_url, args.seconds))
                    print(f"round {r + 1} {name:<22} {rounds[name][-1]}", flush=True)
                rounds["python REST predict"].append(
                    run_python_http(targets["tfdeploy predict"], body, args.seconds)
                )
                rounds["python gRPC predict"].append(
                    run_python_grpc(grpc_address, instance, args.seconds)
                )
                for name in ("python REST predict", "python gRPC predict"):
                    print(f"round {r + 1} {name:<22} {rounds[name][-1]}", flush=True)
        finally:
            for proc in servers:
                stop(proc)

    results = {
        name: {
            "rps": statistics.median(m["rps"] for m in ms),
            "p99_ms": statistics.median(m["p99_ms"] for m in ms),
            "non_2xx": sum(m["non_2xx"] for m in ms),
        }
        for name, ms in rounds.items()
    }
    print(
        f"\nload generator: {generator}, {CONNECTIONS} connections, {args.seconds:g} s x "
        f"{args.rounds} rounds (median round)"
    )
    print(f"{'target':<24}{'req/s':>12}{'p99 ms':>10}{'non-2xx':>9}")
    for name, m in results.items():
        print(f"{name:<24}{m['rps']:>12.0f}{m['p99_ms']:>10.2f}{m['non_2xx']:>9.0f}")
    ours_m, noop_m = results["tfdeploy predict"], results["tfdeploy do-nothing"]
    goals = {
        "predict / do-nothing throughput (goal >= 0.60)": ours_m["rps"] / noop_m["rps"],
        "gRPC / REST throughput, same Python client (goal >= 1.0)": results["python gRPC predict"][
            "rps"
        ]
        / results["python REST predict"]["rps"],
    }
    if "mlflow pyfunc" in results:
        ml = results["mlflow pyfunc"]
        goals["tfdeploy / MLflow throughput (goal >= 10)"] = ours_m["rps"] / ml["rps"]
        goals["tfdeploy / MLflow p99 (goal <= 0.25)"] = ours_m["p99_ms"] / ml["p99_ms"]
    print()
    for text, value in goals.items():
        print(f"{text:<58}{value:>8.2f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "server_vs_mlflow.json").write_text(
        json.dumps(
            {
                "generator": generator,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "results": results,
                "ratios": goals,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
