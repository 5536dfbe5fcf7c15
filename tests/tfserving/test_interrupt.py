"""Ctrl-C on a running `tfdeploy deploy` leaves the previous version in place; a re-run completes it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tfdeploy.testing.cli import CLI


def test_ctrl_c_during_a_deploy_withdraws_the_new_version_and_a_rerun_completes_it(
    tmp_path: Path, digits_savedmodel: Path, digits_savedmodel_changed: Path
) -> None:
    shutil.copytree(digits_savedmodel, tmp_path / "savedmodel")
    models = tmp_path / "models"
    # Nothing listens on port 9: the deploy copies, then waits for a server until interrupted.
    targets = {
        "prod": {"plugin": "tfserving", "base_path": str(models), "grpc": "127.0.0.1:9"},
        "files": {"plugin": "tfserving", "base_path": str(models)},
    }
    config = tmp_path / "deploy.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"path": "savedmodel", "name": "digits"}, "targets": targets})
    )
    cli = CLI(tmp_path)
    first = cli("deploy", "-t", "files", "--yes", "--no-validate")
    assert first.returncode == 0, first.stderr

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
    tmp_path: Path, digits_savedmodel: Path
) -> None:
    shutil.copytree(digits_savedmodel, tmp_path / "savedmodel")
    targets = {
        name: {"plugin": "tfserving", "base_path": str(tmp_path / name), "grpc": "127.0.0.1:9"}
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
