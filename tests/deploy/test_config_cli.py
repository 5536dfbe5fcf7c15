"""`tfdeploy config check`, `config schema`, and -C settings on top of deploy.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tfdeploy
from tfdeploy.testing import Project
from tfdeploy.testing.cli import CLI


def test_config_check_reports_ok_or_the_first_error(tfdeploy_project: Project, cli: CLI) -> None:
    tfdeploy_project.add_target("local", "tfserving", base_path="${MODELS:-/srv/models}")
    ok = cli("config", "check", str(tfdeploy_project.config), "--json")
    assert ok.returncode == 0, ok.stderr
    assert not ok.tensorflow
    assert json.loads(ok.stdout)["targets"] == {"local": "tfserving"}
    tfdeploy_project.add_target("bad", "tfserving", base_path="/x", grcp="h:1")
    bad = cli("config", "check", str(tfdeploy_project.config))
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"Error: {tfdeploy_project.config}:")
    assert "targets.bad.grcp: unknown key (allowed: base_path, grpc" in bad.stderr


def test_config_schema_is_json_with_the_installed_targets(cli: CLI) -> None:
    result = cli("config", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    plugins = [
        t["properties"]["plugin"]["enum"][0]
        for t in schema["properties"]["targets"]["additionalProperties"]["oneOf"]
    ]
    assert "tfserving" in plugins


@pytest.mark.parametrize("in_file", [{"base_path": "from-yaml"}, {}], ids=["override", "supply"])
def test_command_line_settings_override_or_supply_deploy_yaml_settings(
    tfdeploy_project: Project, tmp_path: Path, cli: CLI, in_file: dict[str, str]
) -> None:
    """-C settings are merged over deploy.yaml's before the one validation, so they can also
    supply a key the file leaves out."""
    settings = {k: str(tmp_path / v) for k, v in in_file.items()}
    tfdeploy_project.add_target("local", "tfserving", **settings)
    report = tfdeploy.deploy(
        config=tfdeploy_project.config,
        target="local",
        overrides={"base_path": str(tmp_path / "from-flag")},
        validate=False,
    )
    assert report.ok
    assert (tmp_path / "from-flag" / "digits" / "1" / "saved_model.pb").is_file()
    assert not (tmp_path / "from-yaml").exists()
    config = str(tfdeploy_project.config)
    flag = f"base_path={tmp_path / 'cli'}"
    deployed = cli(
        "deploy", "-t", "local", "-C", flag, "--yes", "--no-validate", "--config", config
    )
    assert deployed.returncode == 0, deployed.stderr
    assert (tmp_path / "cli" / "digits" / "1" / "saved_model.pb").is_file()
    if not in_file:
        missing = cli("status", "-t", "local", "--config", config)
        assert missing.returncode == 1
        assert "targets.local.base_path: required key missing" in missing.stderr


def test_a_bad_command_line_setting_is_named_as_such(tfdeploy_project: Project, cli: CLI) -> None:
    tfdeploy_project.add_target("local", "tfserving", base_path="/srv")
    result = cli(
        "plan", "-t", "local", "-C", "wait_timeout=-1", "--config", str(tfdeploy_project.config)
    )
    assert result.returncode == 1
    assert "-C wait_timeout: Input should be greater than 0" in result.stderr
