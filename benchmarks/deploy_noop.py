"""Redeploying an unchanged model: bytes copied and time, against the first deploy.

    .venv/bin/python benchmarks/deploy_noop.py [--runs 10]

Each run deploys the example digits model (``demo-output/savedmodel``, or a freshly trained
one) to a new ``tfserving`` base path through ``tfdeploy.deploy`` (validation off, as it is
the same for both), then deploys it again. Prints medians, min and max of the first deploy and
of the redeploy, the bytes the redeploy copied, and the ratio. The goal: 0 bytes and under a
second; ``tfdeploy deploy`` as a whole process is timed too (the no-op path imports no
TensorFlow).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tfdeploy


def model_path() -> Path:
    demo = Path(__file__).resolve().parents[1] / "demo-output" / "savedmodel"
    if (demo / "saved_model.pb").is_file():
        return demo
    from tfdeploy.examples.digits import train

    return tfdeploy.export_savedmodel(train(epochs=1), Path(tempfile.mkdtemp()) / "savedmodel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    model = model_path()
    first, again, process, sent = [], [], [], []
    tfdeploy_cli = os.path.join(os.path.dirname(sys.executable), "tfdeploy")
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as base:
            settings = {"base_path": base}
            start = time.perf_counter()
            tfdeploy.deploy(
                model, target="tfserving", name="digits", overrides=settings, validate=False
            )
            first.append(time.perf_counter() - start)
            start = time.perf_counter()
            report = tfdeploy.deploy(model, target="tfserving", name="digits", overrides=settings)
            again.append(time.perf_counter() - start)
            result = report["tfserving"].result
            assert result is not None and not result.changed
            sent.append(result.bytes_sent)
            start = time.perf_counter()
            subprocess.run(
                [
                    tfdeploy_cli,
                    "deploy",
                    str(model),
                    "-t",
                    "tfserving",
                    "--name",
                    "digits",
                    "-C",
                    f"base_path={base}",
                    "--yes",
                    "--json",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            process.append(time.perf_counter() - start)
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    print(f"{args.runs} runs; model {size} bytes")
    for name, values in (
        ("first deploy (API)", first),
        ("redeploy (API)", again),
        ("redeploy (CLI process)", process),
    ):
        print(
            f"{name:<24} median {statistics.median(values) * 1e3:7.1f} ms  "
            f"(min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f})"
        )
    print(f"bytes copied by the redeploys: {sorted(set(sent))}")
    ratios = [a / b for a, b in zip(again, first, strict=True)]
    print(f"ratio redeploy/first (API): median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
