"""Ctrl-C on a running `tfdeploy deploy` leaves the previous version in place; a re-run completes it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tfdeploy.server import ServerHandle, serve_savedmodel
from tfdeploy.testing.cli import CLI


@pytest.fixture
def frozen_server(tmp_path: Path, digits_savedmodel: Path) -> Iterator[Callable[[Path], str]]:
    """Starts servers that answer for what they loaded at start and never poll again: a deploy
    to them copies its version, then waits for it until interrupted."""
    handles: list[ServerHandle] = []

    def start(base: Path) -> str:
        handle = serve_savedmodel(
            model_base_path=base,
            model_name=base.name,
            port=0,
            grpc_port=0,
            background=True,
            quiet=True,
            poll_seconds=0,
        )
        assert handle is not None and handle.grpc_address is not None
        handles.append(handle)
        return handle.grpc_address

    yield start
    for handle in handles:
        handle.stop()


def test_ctrl_c_during_a_deploy_withdraws_the_new_version_and_a_rerun_completes_it(
    tmp_path: Path,
    digits_savedmodel: Path,
    digits_savedmodel_changed: Path,
    frozen_server: Callable[[Path], str],
) -> None:
    shutil.copytree(digits_savedmodel, tmp_path / "savedmodel")
    models = tmp_path / "models"
    config = tmp_path / "deploy.yaml"
    files = {"plugin": "tfserving", "base_path": str(models)}
    config.write_text(
        yaml.safe_dump(
            {"model": {"path": "savedmodel", "name": "digits"}, "targets": {"files": files}}
        )
    )
    cli = CLI(tmp_path)
    first = cli("deploy", "-t", "files", "--yes", "--no-validate")
    assert first.returncode == 0, first.stderr
    # A server that serves version 1 and never looks for another: the deploy waits for it.
    prod = {**files, "grpc": frozen_server(models / "digits")}
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"path": "savedmodel", "name": "digits"},
                "targets": {"files": files, "prod": prod},
            }
        )
    )

    shutil.rmtree(tmp_path / "savedmodel")
    shutil.copytree(digits_savedmodel_changed, tmp_path / "savedmodel")
    process = subprocess.Popen(
        [sys.executable, "-m", "tfdeploy", "deploy", "-t", "prod", "--yes", "--no-validate"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "waiting for the server to serve version 2" in line:
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr

    # Version 2 was withdrawn: the server's highest version is still version 1, unchanged.
    assert sorted(p.name for p in (models / "digits").iterdir() if p.name.isdigit()) == ["1"]
    status = json.loads(cli("status", "-t", "files", "--json").stdout)["targets"][0]["result"]
    assert status["version"] == "1"

    rerun = cli("deploy", "-t", "files", "--yes", "--no-validate", "--json")
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)["targets"][0]["result"]
    assert result["changed"] is True
    assert result["status"]["version"] == "3"  # numbers are never reused


def test_ctrl_c_stops_every_target_of_a_concurrent_deploy(
    tmp_path: Path, digits_savedmodel: Path, frozen_server: Callable[[Path], str]
) -> None:
    shutil.copytree(digits_savedmodel, tmp_path / "savedmodel")
    # A server that answers (it serves another model), so both deploys copy, then wait.
    shutil.copytree(digits_savedmodel, tmp_path / "other" / "1")
    address = frozen_server(tmp_path / "other")
    targets = {
        name: {"plugin": "tfserving", "base_path": str(tmp_path / name), "grpc": address}
        for name in ("east", "west")
    }
    (tmp_path / "deploy.yaml").write_text(
        yaml.safe_dump({"model": {"path": "savedmodel", "name": "digits"}, "targets": targets})
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tfdeploy", "deploy", "--all", "--yes", "--no-validate"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.stderr is not None
    waiting: set[str] = set()
    for line in process.stderr:
        if "waiting for the server to serve version 1" in line:
            waiting.add(line.split("]")[0].strip("["))
        if waiting == {"east", "west"}:
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    assert "[east] withdrew version 1" in rest and "[west] withdrew version 1" in rest
    for name in ("east", "west"):
        assert not [p for p in (tmp_path / name / "digits").iterdir() if p.name.isdigit()]
