"""A deploy that cannot confirm its version never lets it take traffic: with a wrong server
address, or the address of a server that does not read this base path, the deploy fails at
once, before the version appears, and the server watching the base path never loads it."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tfdeploy_tfserving import TFServingConfig, TFServingTarget

from tfdeploy.errors import RemoteError, TargetError
from tfdeploy.model.bundle import Bundle
from tfdeploy.server import ServerHandle, serve_savedmodel


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def watched(tmp_path: Path, digits_bundle: Bundle) -> Iterator[tuple[Path, ServerHandle]]:
    """Version 1 in a base path, and a server that polls it fast (what TF Serving does)."""
    models = tmp_path / "models"
    TFServingTarget(
        TFServingConfig(base_path=str(models)), name="seed", model_name="digits"
    ).deploy(digits_bundle)
    handle = serve_savedmodel(
        model_base_path=models / "digits",
        model_name="digits",
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
        poll_seconds=0.05,
    )
    assert handle is not None
    yield models, handle
    handle.stop()


def deploy_while_watching(
    handle: ServerHandle, target: TFServingTarget, bundle: Bundle
) -> tuple[BaseException, set[int], float]:
    """Deploy and record every version the watching server loaded meanwhile."""
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(s.version for s in handle.repository.status("digits") if s.state != "END")
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with pytest.raises((RemoteError, TargetError)) as err:
            target.deploy(bundle)
        elapsed = time.monotonic() - started
        time.sleep(0.3)  # several polls of the server after the deploy gave up
    finally:
        stop.set()
        watcher.join()
    return err.value, seen, elapsed


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_a_wrong_address_fails_at_once_and_the_version_never_appears(
    watched: tuple[Path, ServerHandle], digits_bundle_changed: Bundle, protocol: str
) -> None:
    models, handle = watched
    port = dead_port()
    settings: dict[str, Any] = (
        {"grpc": f"127.0.0.1:{port}"}
        if protocol == "grpc"
        else {"rest_url": f"http://127.0.0.1:{port}", "protocol": "rest"}
    )
    target = TFServingTarget(
        TFServingConfig(base_path=str(models), wait_timeout=300, **settings),
        name="wrong",
        model_name="digits",
    )
    error, seen, elapsed = deploy_while_watching(handle, target, digits_bundle_changed)
    assert f"127.0.0.1:{port}" in str(error) and "connection refused" in str(error)
    assert not error.retryable
    assert elapsed < 60  # not the 300 s wait_timeout: a refused connection is known at once
    assert seen == {1}, "the watching server loaded a version the deploy could not confirm"
    assert sorted(p.name for p in (models / "digits").iterdir() if p.name.isdigit()) == ["1"]
    assert not list((models / "digits").glob(".tfdeploy-*"))


def test_the_address_of_another_server_fails_before_the_version_appears(
    watched: tuple[Path, ServerHandle],
    digits_bundle_changed: Bundle,
    digits_savedmodel: Path,
    tmp_path: Path,
) -> None:
    models, handle = watched
    shutil.copytree(digits_savedmodel, tmp_path / "elsewhere" / "1")
    other = serve_savedmodel(
        model_base_path=tmp_path / "elsewhere",
        model_name="other",
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
        poll_seconds=0,
    )
    assert other is not None and other.grpc_address is not None
    try:
        target = TFServingTarget(
            TFServingConfig(base_path=str(models), grpc=other.grpc_address, wait_timeout=300),
            name="other",
            model_name="digits",
        )
        error, seen, _ = deploy_while_watching(handle, target, digits_bundle_changed)
    finally:
        other.stop()
    assert "does not serve model 'digits'" in str(error)
    assert "nothing was changed" in str(error)
    assert seen == {1}
    assert sorted(p.name for p in (models / "digits").iterdir() if p.name.isdigit()) == ["1"]


def test_with_the_right_server_the_new_version_serves(
    watched: tuple[Path, ServerHandle], digits_bundle_changed: Bundle
) -> None:
    models, handle = watched
    target = TFServingTarget(
        TFServingConfig(base_path=str(models), grpc=handle.grpc_address, wait_timeout=60),
        name="right",
        model_name="digits",
    )
    result = target.deploy(digits_bundle_changed)
    assert (result.status.version, result.status.state) == ("2", "serving")
