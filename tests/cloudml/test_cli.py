"""The command line end to end: deploy.yaml with a cloudml target, each command in its own
process talking to the fake Vertex AI and, through it, the Cloud Storage emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tfdeploy.testing.cli import CLI

from .conftest import deployed, fake_settings, serving
from .fake_vertex import FakeVertex


@pytest.mark.slow
def test_deploy_status_verify_plan_rollback_undeploy_from_the_command_line(
    vertex: FakeVertex, staging_bucket: Any, tfdeploy_project: Any
) -> None:
    name = "clidigits"
    settings = fake_settings(vertex)
    tfdeploy_project.model_name = name
    tfdeploy_project.add_target("prod", "cloudml", **settings)
    cli = CLI(tfdeploy_project.root)
    model_id = f"tfdeploy-{name}"

    run = cli("deploy", "--target", "prod", "--yes", "--json")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # nothing from the Google libraries' loggers either
    (outcome,) = json.loads(run.stdout)["targets"]
    assert outcome["ok"] and outcome["result"]["changed"] and outcome["result"]["bytes_sent"] > 0
    assert serving(vertex, name) == {(model_id, "1"): 100}

    run = cli("status", "--json")
    assert run.returncode == 0 and not run.tensorflow
    status = json.loads(run.stdout)["targets"][0]["result"]
    assert (status["state"], status["version"], status["plugin"]) == ("serving", "1", "cloudml")
    assert status["url"].startswith(f"{vertex.url}/v1/projects/") and status["url"].endswith(
        ":predict"
    )
    assert [(v["version"], v["traffic_percent"]) for v in status["versions"]] == [("1", 100)]

    run = cli("verify")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "prod: OK" in run.stdout

    # The plugin's alias with -C settings and no deploy.yaml entry: the same deployment.
    overrides = [f"-C{k}={v}" for k, v in settings.items()]
    run = cli("deploy", "--target", "vertex", *overrides, "--name", name, "--yes")
    assert run.returncode == 0, run.stderr
    assert "vertex: unchanged" in run.stdout

    (tfdeploy_project.root / "savedmodel" / "README.txt").write_text("second release\n")
    run = cli("plan", "--json")
    assert json.loads(run.stdout)["targets"][0]["result"]["action"] == "update"
    run = cli("deploy", "--target", "prod", "--yes", "--no-validate")
    assert run.returncode == 0, run.stderr
    assert "prod: deployed" in run.stdout and "version 2 (serving" in run.stdout
    assert serving(vertex, name) == {(model_id, "2"): 100}

    run = cli("rollback", "--target", "prod")
    assert run.returncode == 0, run.stderr
    assert "now clidigits version 1 (serving)" in run.stdout
    assert deployed(vertex, name) == [(model_id, "1")]

    run = cli("undeploy", "--target", "prod", "--yes", "-C", "delete_on_undeploy=true", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["targets"][0]["result"]["state"] == "absent"
    assert vertex.models_named(name) == [] and deployed(vertex, name) == []
