"""Secrets from ${VAR} never show: not in output, --json, progress, errors or deployed files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tfdeploy.testing import Project
from tfdeploy.testing.cli import CLI

SECRET = "tok-5ecret-9f8e7d6c"


def test_a_secret_never_appears_anywhere(
    tfdeploy_project: Project, cli: CLI, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # A secret setting, and a secret that a user pasted into a path by mistake.
    tfdeploy_project.add_target(
        "guarded",
        "tfserving",
        base_path=str(models),
        api_key="${DEPLOY_TOKEN}",
        grpc="127.0.0.1:9",
        wait_timeout=1,
    )
    tfdeploy_project.add_target("pasted", "tfserving", base_path=f"{blocker}/${{DEPLOY_TOKEN}}")
    tfdeploy_project.add_target("files", "tfserving", base_path=str(tmp_path / "served"))
    cli.env["DEPLOY_TOKEN"] = SECRET
    config = str(tfdeploy_project.config)
    runs = [
        cli("config", "check", config),
        cli("plan", "--config", config),
        cli("deploy", "--all", "--yes", "--no-validate", "--config", config),
        cli("deploy", "-t", "pasted", "--yes", "--no-validate", "--json", "--config", config),
        cli("deploy", "-t", "files", "--yes", "--no-validate", "--config", config),
        cli("status", "--config", config),
        cli("status", "--json", "--config", config),
        cli(
            "predict",
            "--target",
            "files",
            "--input",
            str(tfdeploy_project.root / "instances.json"),
            "--config",
            config,
        ),
    ]
    text = "\n".join(r.stdout + r.stderr for r in runs)
    assert "***" in text  # the pasted path was masked in its error
    assert "cannot write version" in text
    assert "target 'files' has no server to predict with" in text
    assert SECRET not in text
    # Nor in anything deployed or packaged.
    found = subprocess.run(
        ["grep", "-r", "-l", SECRET, str(tmp_path)], capture_output=True, text=True
    )
    assert found.stdout == ""
    assert (tmp_path / "served" / "digits" / "1" / "saved_model.pb").is_file()
    # The guarded target could not reach its server, so it changed nothing, and said so.
    assert "cannot reach 127.0.0.1:9 (gRPC GetModelStatus): connection refused" in text
    assert not (models / "digits").exists() or not any((models / "digits").iterdir())
