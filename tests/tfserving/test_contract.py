"""The tfserving target passes the contract tests, against `tfdeploy serve` over real gRPC."""

from __future__ import annotations

from typing import Any

import pytest
from tfdeploy_tfserving import TFServingConfig, TFServingTarget

from tfdeploy.deployment.target import Progress
from tfdeploy.testing.contract import TargetContract, TargetFactory


class TestTFServingContract(TargetContract):
    @pytest.fixture
    def make_target(self, fleet: Any) -> TargetFactory:
        def make(model_name: str, progress: Progress | None = None) -> TFServingTarget:
            target = fleet.target(model_name)
            target.progress = progress or Progress()
            return target

        return make


class TestTFServingRestContract(TargetContract):
    """The same rules with predictions over TF Serving's REST API (reloads still need gRPC)."""

    @pytest.fixture
    def make_target(self, fleet: Any) -> TargetFactory:
        def make(model_name: str, progress: Progress | None = None) -> TFServingTarget:
            config = TFServingConfig(
                base_path=str(fleet.base_path),
                model_config_file=str(fleet.config_file),
                grpc=fleet.handle.grpc_address,
                rest_url=fleet.handle.url,
                protocol="rest",
                wait_timeout=60,
            )
            return TFServingTarget(config, name="rest", model_name=model_name, progress=progress)

        return make
