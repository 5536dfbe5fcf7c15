"""``tfdeploy status`` and ``tfdeploy plan`` against a deploy.yaml with three targets.

    .venv/bin/python benchmarks/deploy_status_plan.py [--runs 15]

Starts ``tfdeploy serve`` on a model base path (gRPC and REST), writes a deploy.yaml with
three ``tfserving`` targets (one asking over gRPC, one over REST, one files only), and times
``tfdeploy status`` and ``tfdeploy plan`` as whole processes, interleaved with ``python -c
pass`` and ``tfdeploy --help``. A command's own time is its median minus the median of
``python -c pass`` (the interpreter's start-up, which every command pays). Goal: under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import tfdeploy


def once(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    from deploy_noop import model_path

    work = tempfile.mkdtemp()
    shutil.copytree(model_path(), Path(work) / "savedmodel")
    base = Path(work) / "models"
    tfdeploy.deploy(
        Path(work) / "savedmodel",
        target="tfserving",
        name="digits",
        overrides={"base_path": str(base)},
        validate=False,
    )
    handle = tfdeploy.serve_savedmodel(
        model_base_path=base / "digits",
        model_name="digits",
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
    )
    assert handle is not None
    targets = {
        "grpc": {"plugin": "tfserving", "base_path": str(base), "grpc": handle.grpc_address},
        "rest": {"plugin": "tfserving", "base_path": str(base), "rest_url": handle.url},
        "files": {"plugin": "tfserving", "base_path": str(base)},
    }
    (Path(work) / "deploy.yaml").write_text(
        yaml.safe_dump({"model": {"path": "savedmodel", "name": "digits"}, "targets": targets})
    )
    cli = os.path.join(os.path.dirname(sys.executable), "tfdeploy")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "tfdeploy --help": [cli, "--help"],
        "tfdeploy status": [cli, "status"],
        "tfdeploy plan": [cli, "plan"],
    }
    try:
        for command in commands.values():
            once(command, work)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(once(command, work))
    finally:
        handle.stop()
        shutil.rmtree(work, ignore_errors=True)
    baseline = statistics.median(times["python -c pass"])
    print(
        f"{args.runs} interleaved runs each; deploy.yaml with 3 targets, server over gRPC and REST"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<16} median {median * 1e3:6.1f} ms  (min {min(values) * 1e3:.1f}, "
            f"max {max(values) * 1e3:.1f})  own time {max(median - baseline, 0) * 1e3:6.1f} ms"
        )


if __name__ == "__main__":
    main()
