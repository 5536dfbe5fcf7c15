"""The connect target's bundles and its unchanged redeploy, against rsconnect-python's own.

    .venv-test/bin/python benchmarks/connect_bundles.py [--runs 10]

For the example digits model (``demo-output/savedmodel``, or a freshly trained one), in each
mode: the bundle's size and the time to build it (manifest by rsconnect-python, archive by
tfdeploy), next to rsconnect-python's own ``make_api_bundle`` / ``make_tensorflow_bundle`` on
the same files, and how many distinct archives each made (one more build of each a second
later: rsconnect-python's hold times; tfdeploy's are byte-identical). Then, against the
fake Connect server of the tests (rsconnect-python's real client over a socket): the bytes the
first deploy and an unchanged redeploy send, and how long each takes. Goal: 0 bytes for the
redeploy. Needs the test environment (rsconnect-python and the fake).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake Connect lives with the tests


def model_path() -> Path:
    demo = ROOT / "demo-output" / "savedmodel"
    if (demo / "saved_model.pb").is_file():
        return demo
    import tfdeploy
    from tfdeploy.examples.digits import train

    return tfdeploy.export_savedmodel(train(epochs=1), Path(tempfile.mkdtemp()) / "savedmodel")


def timed(call: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def describe(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:7.1f} ms "
        f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"
    )


def bundles(mode: str, bundle: Any, model: Path, work: Path, runs: int) -> None:
    """Print the size and build time of ``mode``'s bundle, tfdeploy's and rsconnect's."""
    from rsconnect.bundle import make_api_bundle, make_tensorflow_bundle
    from rsconnect.environment import Environment
    from rsconnect.models import AppModes
    from tfdeploy_connect.bundles import build_bundle, plan_bundle

    plan = plan_bundle(bundle, mode=mode)  # type: ignore[arg-type]
    built: list[bytes] = []
    theirs_built: list[bytes] = []

    def ours() -> None:
        fresh = plan_bundle(bundle, mode=mode)  # type: ignore[arg-type]
        out = build_bundle(fresh, bundle.model_dir, work / f"{mode}-{len(built)}.tar.gz")
        built.append(out.path.read_bytes())

    # rsconnect-python's own writer, on the same files laid out in a directory.
    staging = work / f"rsconnect-{mode}"
    if mode == "app":
        shutil.copytree(model, staging / "savedmodel")
        for name, data in plan.files.items():
            (staging / name).write_bytes(data)
        assert plan.environment is not None
        environment = Environment.from_dict(dict(plan.environment))

        def theirs() -> None:
            tar = make_api_bundle(
                str(staging), "app:app", AppModes.PYTHON_FASTAPI, environment, [], []
            )
            theirs_built.append(tar.read())
    else:
        shutil.copytree(model, staging / "1")

        def theirs() -> None:
            tar = make_tensorflow_bundle(str(staging), [], [])
            theirs_built.append(tar.read())

    ours_times = timed(ours, runs)
    theirs_times = timed(theirs, runs)
    time.sleep(1.1)  # gzip headers and tar members hold times in whole seconds
    ours()
    theirs()
    print(f"\nmode {mode}")
    print(
        f"  tfdeploy bundle      {len(built[0]):>8} bytes, build {describe(ours_times)}, "
        f"{len(set(built))} distinct archive(s) in {len(built)} builds"
    )
    print(
        f"  rsconnect's writer   {len(theirs_built[0]):>8} bytes, build "
        f"{describe(theirs_times)}, {len(set(theirs_built))} distinct archive(s) in "
        f"{len(theirs_built)} builds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    from tests.connect.fake_connect import FakeConnect
    from tfdeploy_connect import ConnectConfig, ConnectTarget

    from tfdeploy.model.bundle import Bundle

    model = model_path()
    bundle = Bundle.from_model(model, name="digits")
    work = Path(tempfile.mkdtemp(prefix="connect-bench-"))
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    print(f"model {model}: {size} bytes; {args.runs} runs each")
    print(
        f"rsconnect-python {metadata.version('rsconnect-python')}, Python {platform.python_version()}"
    )
    for mode in ("app", "tensorflow"):
        bundles(mode, bundle, model, work, args.runs)

    print("\nunchanged redeploy against the fake Connect (rsconnect-python's client)")
    with FakeConnect("bench-key-" + "0" * 16, workdir=work) as fake:
        for mode in ("tensorflow", "app"):
            config = ConnectConfig(
                server=fake.url, api_key="bench-key-" + "0" * 16, mode=mode, name=f"bench-{mode}"
            )

            def target(config: ConnectConfig = config) -> ConnectTarget:
                return ConnectTarget(config, name="connect", model_name="digits")

            fake.clear_requests()
            start = time.perf_counter()
            first = target().deploy(bundle)
            first_time = time.perf_counter() - start
            first_bytes = sum(r.bytes_received for r in fake.requests)
            again_times, again_bytes, again_requests = [], [], []
            for _ in range(args.runs):
                fake.clear_requests()
                start = time.perf_counter()
                result = target().deploy(bundle)
                again_times.append(time.perf_counter() - start)
                assert not result.changed and result.bytes_sent == 0
                again_bytes.append(sum(r.bytes_received for r in fake.requests))
                again_requests.append(len(fake.requests))
            print(
                f"  mode {mode}: first deploy {first.bytes_sent} bytes of bundle, "
                f"{first_bytes} request-body bytes in all, {first_time:.2f} s (app start included)"
            )
            print(
                f"  mode {mode}: redeploy {max(again_bytes)} request-body bytes, "
                f"{statistics.median(again_requests):.0f} requests (all GET), "
                f"{describe(again_times)}"
            )
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
