"""tfdeploy's pytest plugin: fixtures for testing code that serves or deploys SavedModels.

Installed with tfdeploy (entry point ``pytest11``), so a plugin author's tests get:

- ``digits_savedmodel``: path of the example digits classifier, trained once per session
  (input ``image``: 64 floats; output ``prediction``: 10 probabilities).
- ``digits_model``: that model loaded once per session (a :class:`~tfdeploy.LoadedModel`).
- ``digits_instances``: a few real instances for it, as lists of floats.
- ``digits_savedmodel_changed``: the same model with one more file, so another digest.
- ``digits_bundle``, ``digits_bundle_changed``: those two packaged as bundles named ``digits``.
- ``tfdeploy_project``: a temporary project with the model, instances and a deploy.yaml.

:mod:`tfdeploy.testing.contract` holds the contract tests every deploy target passes.

TensorFlow is imported only when one of these fixtures is first used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tfdeploy.model.bundle import Bundle
    from tfdeploy.predict.runtime import LoadedModel


@pytest.fixture(scope="session")
def digits_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example digits classifier exported as a SavedModel, once per test session."""
    from tfdeploy.examples.digits import train
    from tfdeploy.predict.export import export_savedmodel

    return export_savedmodel(train(epochs=5), tmp_path_factory.mktemp("digits") / "savedmodel")


@pytest.fixture(scope="session")
def digits_model(digits_savedmodel: Path) -> LoadedModel:
    """The digits SavedModel loaded once per test session."""
    from tfdeploy.predict.runtime import LoadedModel

    return LoadedModel(digits_savedmodel)


@pytest.fixture(scope="session")
def digits_instances() -> list[Any]:
    """Five real digit images as row-format instances (lists of 64 floats)."""
    from tfdeploy.examples.digits import load_digits

    images, _ = load_digits()
    instances: list[Any] = images[:5].tolist()
    return instances


@pytest.fixture(scope="session")
def digits_savedmodel_changed(
    digits_savedmodel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the digits SavedModel with one extra file: same predictions, another digest."""
    import shutil

    copy = tmp_path_factory.mktemp("digits-changed") / "savedmodel"
    shutil.copytree(digits_savedmodel, copy)
    (copy / "README.txt").write_text("the digits classifier, second release\n")
    return copy


@pytest.fixture(scope="session")
def digits_bundle(digits_savedmodel: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The digits SavedModel packaged as a bundle named ``digits``."""
    from tfdeploy.model.bundle import package

    return package(digits_savedmodel, name="digits", output_dir=tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def digits_bundle_changed(
    digits_savedmodel_changed: Path, tmp_path_factory: pytest.TempPathFactory
) -> Bundle:
    """:func:`digits_savedmodel_changed` packaged as a bundle named ``digits``."""
    from tfdeploy.model.bundle import package

    return package(
        digits_savedmodel_changed, name="digits", output_dir=tmp_path_factory.mktemp("bundle2")
    )


@pytest.fixture
def tfdeploy_project(
    tmp_path: Path, digits_savedmodel: Path, digits_instances: list[Any]
) -> Project:
    """A temporary project: the digits model, example instances and a deploy.yaml without targets.

    Add targets with ``tfdeploy_project.add_target(name, plugin, **settings)``; the file is
    ``tfdeploy_project.config``.
    """
    import shutil

    shutil.copytree(digits_savedmodel, tmp_path / "savedmodel")
    (tmp_path / "instances.json").write_text(json.dumps(digits_instances))
    project = Project(tmp_path)
    project.write()
    return project


class Project:
    """A temporary project directory with a deploy.yaml that tests can add targets to."""

    def __init__(self, root: Path, *, model_name: str = "digits") -> None:
        self.root = root
        self.config = root / "deploy.yaml"
        self.model_name = model_name
        self.targets: dict[str, dict[str, Any]] = {}

    def add_target(self, name: str, plugin: str, **settings: Any) -> Project:
        """Add (or replace) target ``name`` and rewrite deploy.yaml."""
        self.targets[name] = {"plugin": plugin, **settings}
        self.write()
        return self

    def write(self) -> None:
        """Write deploy.yaml."""
        import yaml

        data = {
            "model": {
                "path": "savedmodel",
                "name": self.model_name,
                "instances": "instances.json",
            },
            "targets": self.targets,
        }
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))
