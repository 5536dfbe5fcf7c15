"""The server's memory across version swaps of a large model (issue 9, point 3).

    .venv/bin/python benchmarks/server_swap_memory.py [--megabytes 120] [--swaps 5]

1. Builds a SavedModel whose variables hold ``--megabytes`` of generated float32 weights
   (random numbers from a fixed seed, so nothing compresses away; nothing is downloaded).
2. Serves its folder as a model base path: ``tfdeploy serve --model-base-path BASE
   --file-system-poll-wait-seconds 0.2``, in its own process.
3. Renames ``--swaps`` new versions into the base path one after the other (each a copy of
   the model written aside first, as TF Serving asks), waiting each time until the server
   serves the new version and has unloaded the old one.
4. Reports the server's resident memory (``VmRSS`` of ``/proc/PID/status``) after the first
   load and after each swap, and its peak (``VmHWM``). Results also go to
   benchmarks/results/server_swap_memory.json.

Goal: after N swaps the server holds about one model's worth above what it held after the
first load (the version that serves), not N models' worth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def build_model(path: Path, megabytes: int) -> int:
    """A SavedModel with ``megabytes`` of float32 weights; returns the weights' size in bytes."""
    import numpy as np

    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()
    rows = megabytes * 1024 * 1024 // (4 * 256)
    weights = np.random.default_rng(9).standard_normal((rows, 256), dtype=np.float32)

    class Big(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": tf.reduce_sum(x * self.w[:1], axis=1)}

    export_savedmodel(Big(), path)
    return int(weights.nbytes)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def versions(url: str) -> dict[int, str]:
    """``{version: state}`` from the server's TF Serving status route."""
    with urllib.request.urlopen(url + "/v1/models/big", timeout=10) as answer:
        body = json.loads(answer.read())
    return {int(v["version"]): v["state"] for v in body["model_version_status"]}


def wait_for(condition: Any, limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not get there in time")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=120)
    parser.add_argument("--swaps", type=int, default=5)
    args = parser.parse_args()
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="swap-memory-") as tmp:
        work = Path(tmp)
        model = work / "model"
        size = build_model(model, args.megabytes)
        base = work / "base" / "big"
        shutil.copytree(model, base / "1")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfdeploy",
                "serve",
                "--model-base-path",
                str(base),
                "--model-name",
                "big",
                "--port",
                "0",
                "--file-system-poll-wait-seconds",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            url = first.split(" under ", 1)[1].split()[0]
            wait_for(lambda: versions(url) == {1: "AVAILABLE"})
            rows = [{"after": "first load", **memory(server.pid)}]
            for version in range(2, args.swaps + 2):
                staging = base / f".staging-{version}"
                shutil.copytree(model, staging)
                os.rename(staging, base / str(version))
                wait_for(
                    lambda v=version: (
                        versions(url).get(v) == "AVAILABLE" and versions(url).get(v - 1) == "END"
                    )
                )
                time.sleep(1.0)  # let the unload finish its collection
                rows.append(
                    {"after": f"swap {version - 1} (version {version})", **memory(server.pid)}
                )
                shutil.rmtree(base / str(version - 1))  # keep the disk small, as a fleet would
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"model weights: {size / mb:.0f} MB; {args.swaps} swaps")
    print(f"{'after':<26} {'RSS MB':>8} {'peak MB':>8}")
    for row in rows:
        print(f"{row['after']:<26} {row['VmRSS'] / mb:8.0f} {row['VmHWM'] / mb:8.0f}")
    growth = (rows[-1]["VmRSS"] - rows[0]["VmRSS"]) / mb
    print(
        f"RSS after {args.swaps} swaps - RSS after the first load: {growth:+.0f} MB "
        f"({growth / (size / mb):+.2f} models)"
    )
    out = ROOT / "benchmarks" / "results" / "server_swap_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"weights_bytes": size, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
