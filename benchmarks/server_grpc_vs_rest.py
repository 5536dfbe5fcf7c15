"""gRPC ``Predict`` against REST predict and ``/_noop``, all driven by one C load generator.

    .venv/bin/python benchmarks/server_grpc_vs_rest.py [--seconds 10] [--rounds 3]

One run, one machine, loopback only, bounded in time (``-D`` on every load):

1. The digits SavedModel is exported once and served by ``tfdeploy serve`` (REST and gRPC,
   default settings).
2. ``h2load`` (Debian's ``nghttp2-client``, installed with apt-get when missing and run as
   root) sends, with 32 connections and one request in flight per connection:
   - gRPC: unary ``Predict`` calls over h2c, ``POST /tensorflow.serving.PredictionService/Predict``
     with ``content-type: application/grpc`` and ``te: trailers``; the body is the gRPC frame
     (a 0 byte, the 4-byte big-endian length, the serialized ``PredictRequest`` built with
     ``tf.make_tensor_proto``) of one instance;
   - REST: ``/serving_default/predict`` with ``{"instances": [[64 floats]]}`` over HTTP/1.1
     (``h2load --h1``), and ``/_noop`` (parses the same body, no model);
   - the same REST predict and ``/_noop`` with ``wrk`` (2 threads), when installed, as a
     cross-check;
   - three stand-in grpcio asyncio servers with the same gRPC load, to show where gRPC's time
     goes (see STAND_IN_GRPC_SERVER): empty answers, then decoding and a real answer, then the
     hop through tfdeploy's Batcher (no model).
   Rounds interleave the targets; the median round is reported.
   ``--batch-timeout-micros N`` is passed to ``tfdeploy serve``.
3. gRPC errors travel as HTTP 200 with a ``grpc-status`` trailer, which h2load counts as 2xx.
   So one call is first made with the grpcio stub from ``tensorflow-serving-api`` and its answer
   checked, and the server's own ``/metrics`` counters (requests by status, errors) are read
   before and after every load: a run counts only if the server answered at least as many calls
   OK as h2load reports done (and no more than it started: calls in flight when the time is up
   are started, not done), and counted no error.

Goals (issue 3): gRPC at least as fast as REST; predict at least 60% of ``/_noop``. Results also
go to benchmarks/results/server_grpc_vs_rest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_vs_mlflow import CONNECTIONS, free_port, run_wrk, start_tfdeploy, stop

ROOT = Path(__file__).resolve().parent.parent
PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
#: Stand-in grpcio asyncio servers, to show where gRPC's time goes: ``empty`` answers an empty
#: PredictResponse at once (the most grpcio's Python server gives here); ``decode`` also reads
#: the tensor and builds a real answer (zeros); ``hop`` also passes every request through
#: tfdeploy's Batcher, whose "model" answers zeros at once. No TensorFlow model is called.
STAND_IN_GRPC_SERVER = r"""
import asyncio, sys
import grpc
import numpy as np
from tfdeploy.predict import _tf
_tf.tensorflow()
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tfdeploy.server.batching import Batcher, BatchingOptions
from tfdeploy.server.grpc_service import fill_tensor_proto

MODE = sys.argv[2]


def zeros(signature, inputs):
    return {"prediction": np.zeros((inputs["image"].shape[0], 10), np.float32)}


batcher = Batcher(zeros, BatchingOptions()) if MODE == "hop" else None


class StandIn(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        if MODE == "empty":
            return predict_pb2.PredictResponse()
        t = request.inputs["image"]
        x = np.frombuffer(t.tensor_content, np.float32).reshape([d.size for d in t.tensor_shape.dim])
        if batcher is None:
            out = zeros("serving_default", {"image": x})
        else:
            loop = asyncio.get_running_loop()
            out = await batcher.submit("serving_default", {"image": x}, x.shape[0], loop=loop)
        answer = predict_pb2.PredictResponse()
        answer.model_spec.name = "default"
        answer.model_spec.version.value = 1
        answer.model_spec.signature_name = "serving_default"
        fill_tensor_proto(answer.outputs["prediction"], out["prediction"])
        return answer


async def main():
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(StandIn(), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


asyncio.run(main())
"""
STAND_INS = ("empty", "decode", "hop")
_COUNTER = re.compile(r"^tfdeploy_(requests|errors)_total\{(.*)\} ([\d.e+]+)$", re.M)


def ensure_h2load() -> str:
    """The path of h2load, installing Debian's nghttp2-client first if it is missing."""
    found = shutil.which("h2load")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("h2load is missing: apt-get install nghttp2-client (as root)")
    print("==> apt-get install nghttp2-client (for h2load)", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "nghttp2-client"],
        check=False,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("h2load")
    if not found:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "nghttp2-client"],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("h2load")
    if not found:
        raise SystemExit("h2load could not be installed")
    return found


def start_stand_in(workdir: Path, mode: str) -> tuple[subprocess.Popen[str], str]:
    """A stand-in grpcio server (one of :data:`STAND_INS`); returns the process and address."""
    script = workdir / "stand_in_grpc_server.py"
    script.write_text(STAND_IN_GRPC_SERVER)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the {mode} stand-in gRPC server did not start")
    return proc, f"127.0.0.1:{port}"


def grpc_frame(instance: list[float]) -> tuple[bytes, Any]:
    """The gRPC message frame of a one-instance PredictRequest, and the request itself."""
    import numpy as np

    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.array([instance], np.float32)))
    raw = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(raw)) + raw, request


def check_one_grpc_call(address: str, request: Any) -> None:
    """One real call through the grpcio stub: the frame h2load sends must be a valid Predict."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answer = stub.Predict(request, timeout=30)
    shape = [d.size for d in answer.outputs["prediction"].tensor_shape.dim]
    if shape != [1, 10]:
        raise SystemExit(f"unexpected gRPC answer shape {shape}")


def counters(url: str) -> dict[str, float]:
    """The server's request and error counters, by their label text."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {f"{kind}{{{labels}}}": float(v) for kind, labels, v in _COUNTER.findall(text)}


def parse_h2load(text: str) -> dict[str, float]:
    """Requests/s, done, 2xx and failures from h2load's summary (p99 is not printed by h2load)."""
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    done = re.search(
        r"requests: \d+ total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    if not (rps and done and codes and mean):
        raise SystemExit("cannot read h2load's output:\n" + text)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[mean.group(2)]
    return {
        "rps": float(rps.group(1)),
        "started": float(done.group(1)),
        "done": float(done.group(2)),
        "ok_2xx": float(codes.group(1)),
        "failed": float(done.group(4)) + float(done.group(5)),
        "mean_ms": float(mean.group(1)) * scale,
    }


def run_h2load(
    h2load: str, url: str, body: Path, seconds: float, *, grpc: bool
) -> tuple[list[str], dict[str, float]]:
    """One bounded h2load run; returns its command line and figures."""
    command = [h2load, "-D", f"{seconds:g}", "-c", str(CONNECTIONS), "-m", "1", "-t", "1"]
    if grpc:
        command += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    else:
        command += ["--h1", "-H", "content-type: application/json"]
    command += ["-d", str(body), url]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return command, parse_h2load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--batch-timeout-micros",
        type=int,
        default=None,
        help="passed to tfdeploy serve (default: the server's default, 0)",
    )
    args = parser.parse_args()
    extra = (
        []
        if args.batch_timeout_micros is None
        else ["--batch-timeout-micros", str(args.batch_timeout_micros)]
    )

    from tfdeploy.examples.digits import load_digits, train
    from tfdeploy.predict.export import export_savedmodel

    h2load = ensure_h2load()
    use_wrk = shutil.which("wrk") is not None
    images, _ = load_digits()
    instance = [float(v) for v in images[0]]
    body = json.dumps({"instances": [instance]}).encode()
    frame, request = grpc_frame(instance)

    with tempfile.TemporaryDirectory(prefix="tfdeploy-bench-") as tmp:
        workdir = Path(tmp)
        model = export_savedmodel(train(epochs=1), workdir / "savedmodel")
        json_file, grpc_file = workdir / "body.json", workdir / "body.grpc"
        json_file.write_bytes(body)
        grpc_file.write_bytes(frame)
        server, url, grpc_address = start_tfdeploy(model, extra)
        stand_ins: dict[str, tuple[subprocess.Popen[str], str]] = {}
        try:
            for mode in STAND_INS:
                stand_ins[mode] = start_stand_in(workdir, mode)
            check_one_grpc_call(grpc_address, request)
            grpc_url = f"http://{grpc_address}{PREDICT_PATH}"
            loads: dict[str, tuple[str, str, Path, bool]] = {
                "gRPC Predict (h2load h2c)": ("h2load", grpc_url, grpc_file, True),
                "REST predict (h2load --h1)": (
                    "h2load",
                    url + "/serving_default/predict",
                    json_file,
                    False,
                ),
                "REST /_noop (h2load --h1)": ("h2load", url + "/_noop", json_file, False),
            }
            for mode, (_, address) in stand_ins.items():
                loads[f"stand-in gRPC, {mode} (h2load)"] = (
                    "h2load",
                    f"http://{address}{PREDICT_PATH}",
                    grpc_file,
                    True,
                )
            if use_wrk:
                loads["REST predict (wrk -t2)"] = (
                    "wrk",
                    url + "/serving_default/predict",
                    json_file,
                    False,
                )
                loads["REST /_noop (wrk -t2)"] = ("wrk", url + "/_noop", json_file, False)
            commands: dict[str, str] = {}

            def measure(name: str, seconds: float) -> dict[str, float]:
                tool, target, body_file, is_grpc = loads[name]
                ours = not name.startswith("stand-in")
                before = counters(url)
                if tool == "wrk":
                    m = run_wrk(target, body, seconds, workdir)
                    commands[name] = (
                        f"wrk -t2 -c{CONNECTIONS} -d{seconds:g}s --latency -s post.lua {target}"
                    )
                else:
                    command, m = run_h2load(h2load, target, body_file, seconds, grpc=is_grpc)
                    commands[name] = " ".join(
                        f"'{c}'" if " " in c else c for c in command[1:]
                    ).replace(str(workdir) + "/", "")
                    commands[name] = "h2load " + commands[name]
                after = counters(url)
                delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                if is_grpc and ours:
                    ok = delta.get('requests{protocol="grpc",route="Predict",status="OK"}', 0.0)
                    # Calls still in flight when h2load stops are started, not done.
                    if not m["done"] <= ok <= m["started"] or m["failed"]:
                        raise SystemExit(
                            f"{name}: h2load finished {m['done']:.0f} calls but the server "
                            f"answered {ok:.0f} OK: {delta}"
                        )
                errors = sum(v for k, v in delta.items() if k.startswith("errors"))
                not_ok = m["non_2xx"] if tool == "wrk" else m["done"] - m["ok_2xx"] + m["failed"]
                if errors or not_ok:
                    raise SystemExit(f"{name}: errors during the load: {m} {delta}")
                return m

            for name in loads:  # warm-up
                measure(name, 2)
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in loads}
            for r in range(args.rounds):
                for name in loads:
                    rounds[name].append(measure(name, args.seconds))
                    print(
                        f"round {r + 1} {name:<32} {rounds[name][-1]['rps']:>9.0f} req/s",
                        flush=True,
                    )
        finally:
            stop(server)
            for proc, _ in stand_ins.values():
                stop(proc)

    results: dict[str, dict[str, Any]] = {
        name: {
            "rps": statistics.median(m["rps"] for m in ms),
            "min_rps": min(m["rps"] for m in ms),
            "max_rps": max(m["rps"] for m in ms),
            "command": commands[name],
        }
        for name, ms in rounds.items()
    }
    print(
        f"\n{CONNECTIONS} connections, {args.seconds:g} s x {args.rounds} rounds "
        "(median round; min-max)"
    )
    for name, m in results.items():
        print(f"{name:<32}{m['rps']:>10.0f} req/s  ({m['min_rps']:.0f}-{m['max_rps']:.0f})")
        print(f"    {m['command']}")
    rps: dict[str, float] = {name: m["rps"] for name, m in results.items()}
    ratios = {
        "gRPC / REST predict, both h2load (goal >= 1.0)": rps["gRPC Predict (h2load h2c)"]
        / rps["REST predict (h2load --h1)"],
        "REST predict / _noop, h2load (goal >= 0.60)": rps["REST predict (h2load --h1)"]
        / rps["REST /_noop (h2load --h1)"],
    }
    ratios["empty grpcio server / REST predict (gRPC ceiling)"] = (
        rps["stand-in gRPC, empty (h2load)"] / rps["REST predict (h2load --h1)"]
    )
    if use_wrk:
        ratios["REST predict / _noop, wrk (goal >= 0.60)"] = (
            rps["REST predict (wrk -t2)"] / rps["REST /_noop (wrk -t2)"]
        )
    print()
    for text, value in ratios.items():
        print(f"{text:<50}{value:>8.2f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "server_grpc_vs_rest.json").write_text(
        json.dumps(
            {"seconds": args.seconds, "rounds": args.rounds, "results": results, "ratios": ratios},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
