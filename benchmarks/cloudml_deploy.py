"""The cloudml target against the fake Vertex AI: time to serving, and the unchanged redeploy.

    .venv-test/bin/python benchmarks/cloudml_deploy.py [--runs 3]

Starts gcp-storage-emulator and the fake Vertex AI of the tests (``tests/cloudml/fake_vertex.py``,
long-running operations done after two polls) in this process, then, for each run and a new
model name:

- **deploy to serving**: ``tfdeploy.deploy`` of the example digits model (validation off: it
  is the same for every target) from the call until it returns with the version serving:
  staging, model upload, endpoint creation, deployment, traffic; once with the default poll
  schedule (a poll at once, the next after ``poll_interval`` = 2 s) and once with
  ``poll_interval: 0``, to separate waiting from work;
- **unchanged redeploy**: the same model again, through ``tfdeploy.deploy`` and through the
  ``tfdeploy deploy`` command as a whole process: bytes uploaded (reported, and counted at the
  fake's Cloud Storage front) and wall time.

Prints medians, min and max. Needs the test environment (``scripts/env --test``): the fake and
the emulator are test tools.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cloudml"))

import tfdeploy  # noqa: E402


def model_path() -> Path:
    demo = ROOT / "demo-output" / "savedmodel"
    if (demo / "saved_model.pb").is_file():
        return demo
    from tfdeploy.examples.digits import train

    return tfdeploy.export_savedmodel(train(epochs=1), Path(tempfile.mkdtemp()) / "savedmodel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from fake_vertex import FakeVertex  # type: ignore[import-not-found]
    from gcp_storage_emulator.server import create_server  # type: ignore[import-untyped]
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    port = free_port()
    emulator = create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    fake = FakeVertex(gcs_upstream=f"http://127.0.0.1:{port}", polls_to_finish=2).start()
    os.environ["STORAGE_EMULATOR_HOST"] = fake.url
    client = storage.Client(project=fake.project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    client.create_bucket("bench-staging")
    model = model_path()
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    base: dict[str, Any] = {
        "project": fake.project,
        "region": fake.location,
        "staging_bucket": "gs://bench-staging",
        "api_endpoint": fake.url,
        "anonymous": True,
    }
    cli = os.path.join(os.path.dirname(sys.executable), "tfdeploy")
    timings: dict[str, list[float]] = {}
    uploaded: list[int] = []
    polls: list[int] = []
    try:
        for run in range(args.runs):
            for label, poll in (("default polling", None), ("poll_interval 0", 0)):
                name = f"bench{run}-{poll}"
                settings = dict(base, **({} if poll is None else {"poll_interval": poll}))
                start_requests = len(fake.requests)
                start = time.perf_counter()
                report = tfdeploy.deploy(
                    model, target="cloudml", name=name, overrides=settings, validate=False
                )
                timings.setdefault(f"deploy to serving, {label}", []).append(
                    time.perf_counter() - start
                )
                result = report["cloudml"].result
                assert result is not None and result.status.state == "serving"
                polls.append(
                    sum(1 for r in fake.requests[start_requests:] if r.step == "operation")
                )
            # The unchanged redeploy of the last model, in this process and as a command.
            start_requests = len(fake.requests)
            start = time.perf_counter()
            report = tfdeploy.deploy(model, target="cloudml", name=name, overrides=settings)
            timings.setdefault("unchanged redeploy (API)", []).append(time.perf_counter() - start)
            result = report["cloudml"].result
            assert result is not None and not result.changed
            start = time.perf_counter()
            subprocess.run(
                [cli, "deploy", str(model), "-t", "cloudml", "--name", name, "--yes", "--json"]
                + [f"-C{k}={v}" for k, v in settings.items()],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            timings.setdefault("unchanged redeploy (tfdeploy deploy process)", []).append(
                time.perf_counter() - start
            )
            uploaded.append(
                result.bytes_sent
                + sum(r.body_size for r in fake.requests[start_requests:] if r.step == "upload")
            )
    finally:
        fake.stop()
        emulator.stop()
    print(f"{args.runs} runs; model {size:,} bytes; operations done after 2 polls")
    for label, values in timings.items():
        print(f"{label}: {summary(values)}")
    print(f"polls per first deploy: {sorted(set(polls))}")
    print(f"bytes uploaded by the unchanged redeploys: {uploaded} (goal 0)")


if __name__ == "__main__":
    main()
