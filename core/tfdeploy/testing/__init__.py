"""tfdeploy's pytest plugin: fixtures for testing code that serves or deploys SavedModels.

Installed with tfdeploy (entry point ``pytest11``), so a plugin author's tests get:

- ``digits_savedmodel``: path of the example digits classifier, trained once per session
  (input ``image``: 64 floats; output ``prediction``: 10 probabilities).
- ``digits_model``: that model loaded once per session (a :class:`~tfdeploy.LoadedModel`).
- ``digits_instances``: a few real instances for it, as lists of floats.

TensorFlow is imported only when one of these fixtures is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tfdeploy.runtime import LoadedModel


@pytest.fixture(scope="session")
def digits_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example digits classifier exported as a SavedModel, once per test session."""
    from tfdeploy.examples.digits import train
    from tfdeploy.export import export_savedmodel

    return export_savedmodel(train(epochs=5), tmp_path_factory.mktemp("digits") / "savedmodel")


@pytest.fixture(scope="session")
def digits_model(digits_savedmodel: Path) -> LoadedModel:
    """The digits SavedModel loaded once per test session."""
    from tfdeploy.runtime import LoadedModel

    return LoadedModel(digits_savedmodel)


@pytest.fixture(scope="session")
def digits_instances() -> list[Any]:
    """Five real digit images as row-format instances (lists of 64 floats)."""
    from tfdeploy.examples.digits import load_digits

    images, _ = load_digits()
    instances: list[Any] = images[:5].tolist()
    return instances
