"""The connect target passes the contract tests every target passes, in both modes, against the
fake Connect server through rsconnect-python.

In mode app every deploy makes the fake unpack the bundle and start its app (tfdeploy's own
server) in a fresh process, and predictions go through that process: the contract's
predictions prove the bundle runs.
"""

from __future__ import annotations

import pytest
from tests.connect.conftest import Targets
from tfdeploy_connect import ConnectTarget

from tfdeploy.plugin import Progress
from tfdeploy.testing.contract import TargetContract, TargetFactory


class TestConnectAppContract(TargetContract):
    @pytest.fixture
    def make_target(self, targets: Targets) -> TargetFactory:
        def make(model_name: str, progress: Progress | None = None) -> ConnectTarget:
            return targets(model_name, progress, mode="app")

        return make


class TestConnectTensorflowContract(TargetContract):
    @pytest.fixture
    def make_target(self, targets: Targets) -> TargetFactory:
        def make(model_name: str, progress: Progress | None = None) -> ConnectTarget:
            return targets(model_name, progress, mode="tensorflow")

        return make
