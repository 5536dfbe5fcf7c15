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
   - the same REST predict and ``/_noop`` with ``wrk`` (2 threads; installed like h2load), as a
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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import CONNECTIONS, ensure_tool, h2load_command, run_h2load, run_wrk, wrk_command
from servers import (
    GRPC_OK,
    GRPC_PREDICT_PATH,
    Server,
    exit_on_sigterm,
    free_port,
    grpc_predict,
    launch,
    settled_counters,
    start_tfdeploy,
    stop,
    stop_all,
)
from workload import Payload

ROOT = Path(__file__).resolve().parent.parent
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


def start_stand_in(workdir: Path, mode: str) -> Server:
    """A stand-in grpcio server (one of :data:`STAND_INS`), started and ready."""
    script = workdir / "stand_in_grpc_server.py"
    script.write_text(STAND_IN_GRPC_SERVER)
    port = free_port()
    log = workdir / f"stand-in-{mode}.log"
    server = launch(f"stand-in {mode}", [sys.executable, str(script), str(port), mode], log)
    server.grpc_address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.proc.poll() is None:
        if "ready" in log.read_text(errors="replace").splitlines():
            return server
        time.sleep(0.2)
    stop(server)
    raise SystemExit(f"the {mode} stand-in gRPC server did not start:\n{server.log_tail()}")


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

    exit_on_sigterm()
    h2load = ensure_tool("h2load", "nghttp2-client")
    wrk = ensure_tool("wrk", "wrk")
    images, _ = load_digits()
    payload = Payload("digits", "digits", images[:1])
    frame, request = payload.grpc_frame("default")

    with tempfile.TemporaryDirectory(prefix="tfdeploy-bench-") as tmp:
        workdir = Path(tmp)
        model = export_savedmodel(train(epochs=1), workdir / "savedmodel")
        json_file, grpc_file = workdir / "body.json", workdir / "body.grpc"
        json_file.write_bytes(payload.v1_body())
        grpc_file.write_bytes(frame)
        try:
            server = start_tfdeploy(model, workdir / "tfdeploy.log", extra)
            url = server.url
            stand_ins = {mode: start_stand_in(workdir, mode) for mode in STAND_INS}
            answer = grpc_predict(server.grpc_address, request)
            if list(answer.shape) != [1, 10]:
                raise SystemExit(f"unexpected gRPC answer shape {list(answer.shape)}")
            grpc_url = f"http://{server.grpc_address}{GRPC_PREDICT_PATH}"
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
            for mode, stand_in in stand_ins.items():
                loads[f"stand-in gRPC, {mode} (h2load)"] = (
                    "h2load",
                    f"http://{stand_in.grpc_address}{GRPC_PREDICT_PATH}",
                    grpc_file,
                    True,
                )
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
                before = settled_counters(url)
                if tool == "wrk":
                    m = run_wrk(target, body_file, seconds)
                    command = wrk_command(
                        target, body_file.with_name(body_file.name + ".lua"), seconds
                    )
                    command[0] = wrk
                else:
                    m = run_h2load(h2load, target, body_file, seconds, grpc=is_grpc)
                    command = h2load_command(h2load, target, body_file, seconds, grpc=is_grpc)
                commands[name] = (
                    Path(command[0]).name
                    + " "
                    + " ".join(f"'{c}'" if " " in c else c for c in command[1:]).replace(
                        str(workdir) + "/", ""
                    )
                )
                after = settled_counters(url)
                delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                if is_grpc and ours:
                    ok = delta.get(GRPC_OK, 0.0)
                    # Calls still in flight when h2load stops are started, not done.
                    if not m["done"] <= ok <= m["started"] or m["failed"]:
                        raise SystemExit(
                            f"{name}: h2load finished {m['done']:.0f} calls but the server "
                            f"answered {ok:.0f} OK: {delta}"
                        )
                errors = sum(v for k, v in delta.items() if k.startswith("errors"))
                not_ok = (
                    m["non_2xx"] + m["socket_errors"]
                    if tool == "wrk"
                    else m["done"] - m["ok_2xx"] + m["failed"]
                )
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
            stop_all()

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
