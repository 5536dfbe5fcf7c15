"""The cloudml target passes the contract tests every target passes, against the fake Vertex AI."""

from __future__ import annotations

from typing import Any

import pytest

from tfdeploy.plugin import Progress
from tfdeploy.testing.contract import TargetContract, TargetFactory


class TestCloudMLContract(TargetContract):
    @pytest.fixture
    def make_target(self, make_cloudml: Any) -> TargetFactory:
        def make(model_name: str, progress: Progress | None = None) -> Any:
            return make_cloudml(model_name, progress)

        return make
