"""deploy, plan, status, verify, rollback and undeploy across targets: Python API and CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tfdeploy_example import ExampleTarget

import tfdeploy
from tfdeploy.cli.output import EXIT_MISMATCH
from tfdeploy.deployment import registry
from tfdeploy.plugin import Progress, Status, TargetError, TransientError
from tfdeploy.testing import Project
from tfdeploy.testing.cli import CLI


@pytest.fixture
def project(tfdeploy_project: Project, tmp_path: Path) -> Project:
    tfdeploy_project.add_target("alpha", "example", path=str(tmp_path / "alpha"))
    tfdeploy_project.add_target("beta", "example-dir", path=str(tmp_path / "beta"))
    return tfdeploy_project


def test_python_deploy_is_a_noop_the_second_time(project: Project) -> None:
    first = tfdeploy.deploy(config=project.config, target="alpha")
    assert first["alpha"].result is not None and first["alpha"].result.changed
    again = tfdeploy.deploy(config=project.config, target="alpha")
    result = again["alpha"].result
    assert result is not None and not result.changed and result.bytes_sent == 0
    (status,) = tfdeploy.status("alpha", config=project.config).results().values()
    assert isinstance(status, Status)
    assert (status.state, status.version) == ("serving", "1")


def test_target_given_by_plugin_name_takes_its_settings_from_overrides(
    project: Project, tmp_path: Path
) -> None:
    report = tfdeploy.deploy(
        project.root / "savedmodel",
        target="example",
        name="adhoc",
        overrides={"path": str(tmp_path / "adhoc")},
    )
    assert report.ok
    assert (tmp_path / "adhoc" / "adhoc" / "1" / "saved_model.pb").is_file()


def test_cli_deploys_every_target_concurrently_with_progress_per_target(
    project: Project, cli: CLI
) -> None:
    result = cli("deploy", "--all", "--yes", "--config", str(project.config))
    assert result.returncode == 0, result.stderr
    assert "[alpha] validating the model" in result.stderr or "[beta] validating" in result.stderr
    assert "[alpha] 100%" in result.stderr and "[beta] 100%" in result.stderr
    assert "alpha: deployed — digits version 1" in result.stdout
    assert "beta: deployed — digits version 1" in result.stdout
    # Nothing changed: no packaging, no TensorFlow, one JSON document and a silent stderr.
    again = cli("deploy", "--all", "--yes", "--json", "--config", str(project.config))
    assert again.returncode == 0
    assert again.stderr == ""
    assert not again.tensorflow
    doc = json.loads(again.stdout)
    assert doc["ok"] is True
    assert [t["result"]["changed"] for t in doc["targets"]] == [False, False]


def test_plan_and_dry_run_change_nothing(project: Project, cli: CLI, tmp_path: Path) -> None:
    result = cli("deploy", "--dry-run", "-t", "alpha", "--config", str(project.config), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["targets"][0]["result"]["action"] == "create"
    assert not (tmp_path / "alpha").exists()
    result = cli("plan", "--config", str(project.config))
    assert "alpha: create" in result.stdout and "beta: create" in result.stdout
    assert not result.tensorflow


def test_a_failing_target_does_not_stop_the_others_and_exits_1(
    project: Project, cli: CLI, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    project.add_target("broken", "tfserving", base_path=str(blocker))
    result = cli(
        "deploy",
        "-t",
        "broken",
        "-t",
        "alpha",
        "--yes",
        "--no-validate",
        "--json",
        "--config",
        str(project.config),
    )
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    outcomes = {t["target"]: t for t in doc["targets"]}
    assert outcomes["alpha"]["ok"] is True
    assert outcomes["broken"]["ok"] is False
    assert "cannot write version 1" in outcomes["broken"]["error"]["message"]
    plain = cli("deploy", "-t", "broken", "--yes", "--no-validate", "--config", str(project.config))
    assert plain.returncode == 1
    assert "broken: error: cannot write version 1" in plain.stderr
    assert "Traceback" not in plain.stderr


def test_a_target_validation_check_stops_the_deploy(project: Project, tmp_path: Path) -> None:
    project.add_target("tiny", "example", path=str(tmp_path / "tiny"), max_bytes=10)
    with pytest.raises(TargetError, match="example: size"):
        tfdeploy.deploy(config=project.config, target="tiny")
    assert not (tmp_path / "tiny").exists()
    # With several targets, every target's checks apply to the one validation of the model.
    report = tfdeploy.deploy(config=project.config, all_targets=True, raise_on_error=False)
    assert [o.ok for o in report.outcomes] == [False, False, False]
    assert all("example: size" in (o.error.message if o.error else "") for o in report.outcomes)
    assert not (tmp_path / "alpha").exists()


@pytest.fixture(scope="session")
def other_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits network with other (untrained) weights: same signature, other answers."""
    from tfdeploy.examples.digits import build_model
    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    _tf.keras().utils.set_random_seed(123)
    return export_savedmodel(build_model(), tmp_path_factory.mktemp("other") / "savedmodel")


def test_verify_exit_codes_ok_and_mismatch(
    project: Project, cli: CLI, other_savedmodel: Path
) -> None:
    tfdeploy.deploy(config=project.config, target="alpha")
    ok = cli("verify", "-t", "alpha", "--config", str(project.config))
    assert ok.returncode == 0, ok.stderr
    assert "alpha: OK (5 instances" in ok.stdout
    assert "prediction" in ok.stdout or "predictions" in ok.stdout
    mismatch = cli(
        "verify",
        "-t",
        "alpha",
        "--config",
        str(project.config),
        "--model",
        str(other_savedmodel),
        "--json",
    )
    assert mismatch.returncode == EXIT_MISMATCH == 3
    doc = json.loads(mismatch.stdout)["targets"][0]["result"]
    assert doc["ok"] is False
    assert doc["outputs"][0]["max_abs_diff"] > doc["tolerance"]


def test_rollback_and_undeploy_through_the_cli(
    project: Project, cli: CLI, digits_savedmodel_changed: Path, tmp_path: Path
) -> None:
    tfdeploy.deploy(config=project.config, target="alpha")
    tfdeploy.deploy(digits_savedmodel_changed, config=project.config, target="alpha")
    back = cli("rollback", "-t", "alpha", "--config", str(project.config))
    assert back.returncode == 0, back.stderr
    assert "alpha: rolled back; now digits version 1 (serving)" in back.stdout
    gone = cli("undeploy", "-t", "alpha", "--yes", "--config", str(project.config))
    assert gone.returncode == 1  # the example plugin does not implement undeploy
    assert "target 'example' cannot undeploy" in gone.stderr


class Flaky(ExampleTarget):
    """Status fails ``limit`` times with a transient error before answering."""

    failures = 0
    limit = 2

    def status(self) -> Status:
        if Flaky.failures < Flaky.limit:
            Flaky.failures += 1
            raise TransientError("the service is busy")
        return super().status()


class FlakyPlugin:
    @tfdeploy.hookimpl
    def register_targets(self, register: Any) -> None:
        register("flaky", Flaky)


@pytest.fixture
def flaky_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_loaded", registry.load(extra=[("flaky", FlakyPlugin())]))
    Flaky.failures, Flaky.limit = 0, 2
    yield
    registry.reset()


class Steps(Progress):
    """Records the steps a target reports, and the retries the operations report."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.retries: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def retrying(self, message: str, delay: float) -> None:
        self.retries.append(f"{message}; retrying in {delay:.1f} s")


def test_transient_errors_are_retried_within_the_timeout(
    flaky_plugins: None, project: Project, tmp_path: Path
) -> None:
    project.add_target("flaky", "flaky", path=str(tmp_path / "flaky"))
    seen = Steps()
    report = tfdeploy.deploy(
        config=project.config, target="flaky", progress=lambda _: seen, validate=False
    )
    assert report.ok
    assert sum("the service is busy; retrying" in line for line in seen.retries) == 2
    assert not any("retrying" in step for step in seen.steps)


def test_retries_stop_at_the_timeout(flaky_plugins: None, project: Project, tmp_path: Path) -> None:
    project.add_target("flaky", "flaky", path=str(tmp_path / "flaky"))
    Flaky.limit = 1000
    with pytest.raises(TransientError, match="still failing after 0.3 s"):
        tfdeploy.deploy(config=project.config, target="flaky", timeout=0.3, validate=False)


def test_unknown_target_and_missing_target_are_clear_errors(project: Project, cli: CLI) -> None:
    result = cli("deploy", "-t", "gamma", "--yes", "--config", str(project.config))
    assert result.returncode == 1
    assert "'gamma' is neither a target of" in result.stderr
    result = cli("status", "-t", "tfserving", "--config", str(project.config))
    assert result.returncode == 1
    assert "base_path: required key missing" in result.stderr
    result = cli("deploy", "--yes", "--config", str(project.config))
    assert "no target given" in result.stderr
