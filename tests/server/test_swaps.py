"""Version swaps free the version they replace: nothing keeps an unloaded model alive, and a
server's memory stays about one model's worth however many versions it has swapped in."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy.server import serve_savedmodel
from tfdeploy.server.repository import ModelConfig, ModelRepository

pytestmark = pytest.mark.slow


def swap_in(source: Path, base: Path, version: int) -> None:
    """Write a copy of ``source`` aside, then rename it in as ``version`` (as TF Serving asks)."""
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    os.rename(staging, base / str(version))


def test_an_unloaded_version_is_freed_even_after_gc_freeze(
    tmp_path: Path, digits_savedmodel: Path
) -> None:
    base = tmp_path / "base"
    swap_in(digits_savedmodel, base, 1)
    repo = ModelRepository([ModelConfig("m", base)], poll_seconds=0)
    repo.start()
    try:
        refs = held_by(repo.resolve("m"))
        for version in (2, 3):
            swap_in(digits_savedmodel, base, version)
            repo.poll_once()  # sees the new folder
            repo.poll_once()  # unchanged since: loads it, unloads the old one
            assert repo.resolve("m").version == version
            gc.collect()
            assert all(r() is None for r in refs), "an unloaded version stayed alive"
            refs = held_by(repo.resolve("m"))
    finally:
        repo.close()


def held_by(servable: Any) -> list[weakref.ref[Any]]:
    """Weak references to a version's objects, down to its graph, which holds the variables
    and is part of reference cycles: only a garbage collection frees it."""
    model = servable.model
    return [weakref.ref(servable), weakref.ref(model), weakref.ref(model.graph)]


def test_the_servers_caches_do_not_keep_an_unloaded_version(
    tmp_path: Path, digits_savedmodel: Path
) -> None:
    base = tmp_path / "base"
    swap_in(digits_savedmodel, base, 1)
    handle = serve_savedmodel(
        model_base_path=base, port=0, grpc_port=0, background=True, quiet=True, poll_seconds=0.05
    )
    assert handle is not None
    try:
        refs = held_by(handle.repository.resolve())[1:]
        # Every route that can remember something about the version that answered it.
        assert http("GET", handle.url + "/openapi.json")[0] == 200
        assert http("GET", handle.url + "/v1/models/default/metadata")[0] == 200
        body = {"instances": [[0.0] * 64]}
        assert http("POST", handle.url + "/serving_default/predict", body)[0] == 200
        swap_in(digits_savedmodel, base, 2)
        wait_until(lambda: handle.repository.status("default", 1)[0].state == "END")
        gc.collect()
        assert all(r() is None for r in refs), "version 1 is still referenced after its unload"
        assert http("GET", handle.url + "/openapi.json")[0] == 200
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def big_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with 32 MB of generated float32 weights (random, so nothing is shared)."""
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()
    weights = np.random.default_rng(3).standard_normal((32 * 1024, 256), dtype=np.float32)

    class Big(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": tf.reduce_sum(x * self.w[:1], axis=1)}

    return export_savedmodel(Big(), tmp_path_factory.mktemp("big") / "savedmodel")


def test_server_memory_stays_flat_across_version_swaps(
    tmp_path: Path, big_savedmodel: Path
) -> None:
    model_mb = 32
    base = tmp_path / "base"
    swap_in(big_savedmodel, base, 1)
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tfdeploy", "serve", "--model-base-path", str(base)),
            *("--port", "0", "--file-system-poll-wait-seconds", "0.1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" under ", 1)[1].split()[0]

        def states() -> dict[int, str]:
            with urllib.request.urlopen(url + "/v1/models/default", timeout=10) as answer:
                rows = json.loads(answer.read())["model_version_status"]
            return {int(r["version"]): r["state"] for r in rows}

        wait_until(lambda: states() == {1: "AVAILABLE"})
        rss = [resident_mb(server.pid)]
        for version in range(2, 7):
            swap_in(big_savedmodel, base, version)
            wait_until(lambda v=version: states().get(v - 1) == "END")  # type: ignore[misc]
            shutil.rmtree(base / str(version - 1))
            rss.append(resident_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    # TensorFlow's CPU allocator keeps a pool as large as the most it ever held at once (two
    # models, while the new one loads beside the old), so the first swap may add one model;
    # after that, each swap must free what it replaces. A leak adds a model per swap.
    per_swap = (rss[-1] - rss[1]) / (len(rss) - 2)
    assert per_swap < model_mb / 4, f"RSS after each swap (MB): {rss}"
    assert rss[-1] - rss[0] < 1.6 * model_mb, f"RSS after each swap (MB): {rss}"


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wait_until(condition: Callable[[], bool], limit: float = 120.0) -> None:
    """Poll ``condition``; a guard against hanging, not a timing assertion."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)
