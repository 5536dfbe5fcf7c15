"""A `tfdeploy serve` fleet shared by the tfserving tests: one server reading a model config file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tfdeploy_tfserving import TFServingConfig, TFServingTarget

from tfdeploy.model.bundle import Bundle


@dataclass
class Fleet:
    """A base path, the model config file the server reads, and the running server."""

    base_path: Path
    config_file: Path
    handle: Any

    def target(self, model_name: str, **settings: Any) -> TFServingTarget:
        """A target deploying ``model_name`` to this fleet, over gRPC."""
        config = TFServingConfig(
            base_path=str(self.base_path),
            model_config_file=str(self.config_file),
            grpc=self.handle.grpc_address,
            rest_url=self.handle.url,
            wait_timeout=60,
            **settings,
        )
        return TFServingTarget(config, name="fleet", model_name=model_name)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, digits_bundle: Bundle) -> Iterator[Fleet]:
    """A server started on a model config file, which the tests' targets extend and reload."""
    from tfdeploy.server import serve_savedmodel

    root = tmp_path_factory.mktemp("fleet")
    config_file = root / "models.config"
    seed = TFServingTarget(
        TFServingConfig(base_path=str(root / "models"), model_config_file=str(config_file)),
        name="seed",
        model_name="seed",
    )
    seed.deploy(digits_bundle)
    handle = serve_savedmodel(
        model_config_file=config_file,
        port=0,
        grpc_port=0,
        background=True,
        poll_seconds=0.2,
        quiet=True,
    )
    assert handle is not None
    yield Fleet(root / "models", config_file, handle)
    handle.stop()
