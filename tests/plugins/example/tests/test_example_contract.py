"""The example target passes the contract tests every target passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from tfdeploy_example import ExampleConfig, ExampleTarget

from tfdeploy.plugin import Progress
from tfdeploy.testing.contract import TargetContract, TargetFactory


class TestExampleContract(TargetContract):
    @pytest.fixture
    def make_target(self, tmp_path: Path) -> TargetFactory:
        def make(model_name: str, progress: Progress | None = None) -> ExampleTarget:
            config = ExampleConfig(path=str(tmp_path / "deployments"))
            return ExampleTarget(config, name="ex", model_name=model_name, progress=progress)

        return make
