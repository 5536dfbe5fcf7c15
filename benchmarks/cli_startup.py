"""Start-up time of ``tfdeploy --help`` against ``python -c pass``, as whole processes.

    .venv/bin/python benchmarks/cli_startup.py [--runs 20]

Runs the two commands in turn (A B A B ...) after a warm-up and prints medians, min, max and
the median of the pairwise ratios. The goal is a ``--help`` median under 0.3 s: it must not
import TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tfdeploy = os.path.join(os.path.dirname(sys.executable), "tfdeploy")
    commands = {
        "tfdeploy --help": [tfdeploy, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    for command in commands.values():
        once(command)  # warm-up: page cache, .pyc files
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(once(command))
    ratios = [a / b for a, b in zip(times["tfdeploy --help"], times["python -c pass"], strict=True)]
    print(f"{args.runs} interleaved runs each")
    for name, values in times.items():
        print(
            f"{name:<16} median {statistics.median(values) * 1e3:6.1f} ms  "
            f"(min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f})"
        )
    print(f"ratio tfdeploy/python: median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
