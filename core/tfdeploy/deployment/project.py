"""Where an operation runs: a deploy.yaml (if any), its model, and the targets it names.

:func:`open_project` reads deploy.yaml and settles the model; :meth:`Project.open_target`
makes a target instance from a deploy.yaml entry or a plugin name, with its settings merged
from the file and ``-C`` overrides and validated once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfdeploy.deployment import config as configuration
from tfdeploy.deployment.target import Progress, Target, TargetConfig
from tfdeploy.errors import ConfigError, TfdeployError
from tfdeploy.model.signatures import DEFAULT_SIGNATURE

AnyTarget = Target[TargetConfig]


@dataclass
class Project:
    """Where a command runs: the deploy.yaml (if any), the model, and the installed plugins."""

    config: configuration.DeployConfig | None
    model_path: Path | None
    model_name: str | None
    signature: str = DEFAULT_SIGNATURE
    tolerance: float = 1e-4
    _plugins: Any = field(default=None, repr=False)

    @functools.cached_property
    def instances(self) -> Any:
        """deploy.yaml's example instances (``None`` without any), read on first use."""
        if self.config is None or self.config.model.instances is None:
            return None
        return self.config.instances()

    @property
    def plugins(self) -> Any:
        """The loaded plugins (:class:`tfdeploy.deployment.registry.Plugins`)."""
        if self._plugins is None:
            from tfdeploy.deployment.registry import get_plugins

            self._plugins = get_plugins()
        return self._plugins

    def target_names(self) -> list[str]:
        """The targets deploy.yaml names, in file order."""
        return list(self.config.targets) if self.config else []

    def select(self, target: str | Sequence[str] | None, all_targets: bool) -> list[str]:
        """The target names an operation acts on: those given, plus every one with ``all_targets``."""
        names = [target] if isinstance(target, str) else list(target or [])
        if all_targets:
            names = [*names, *[n for n in self.target_names() if n not in names]]
        if not names:
            known = ", ".join(self.target_names())
            raise ConfigError(
                "no target given",
                hint=f"pass --target NAME or --all (deploy.yaml targets: {known})"
                if known
                else "pass --target PLUGIN with -C key=value settings, or write a deploy.yaml",
            )
        return names

    def open_target(
        self,
        name: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> AnyTarget:
        """An instance of target ``name`` (deploy.yaml name or plugin name) with its config."""
        overrides = dict(overrides or {})
        if self.config is not None and name in self.config.targets:
            target_type, target_config = self.config.target_config(name, self.plugins, overrides)
        else:
            try:
                target_type = self.plugins.target_type(name)
            except TfdeployError as exc:
                if self.config is not None:
                    known = ", ".join(self.config.targets) or "none"
                    raise ConfigError(
                        f"{name!r} is neither a target of {self.config.path} ({known}) "
                        "nor an installed target plugin",
                        hint=exc.hint,
                    ) from None
                raise
            target_config = configuration.build_target_config(
                target_type.target_class.Config, overrides, where=configuration.override_place
            )
        if not self.model_name:
            raise ConfigError("no model name", hint="pass --name, or set model.name in deploy.yaml")
        target: AnyTarget = target_type.target_class(
            target_config,
            name=name,
            model_name=self.model_name,
            plugin=target_type.name,
            progress=progress,
        )
        return target

    def require_model(self) -> Path:
        """The model path, or a :class:`ConfigError` saying how to give one."""
        if self.model_path is None:
            raise ConfigError(
                "no model to deploy",
                hint="pass the SavedModel path, or write a deploy.yaml with a model section",
            )
        return self.model_path


def open_project(
    config: str | os.PathLike[str] | None = None,
    *,
    model_path: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> Project:
    """Read deploy.yaml (``config``, or ./deploy.yaml when it exists) and settle the model."""
    config_file = configuration.find(config) if config is not None else configuration.find()
    if config is not None and config_file is None:
        raise ConfigError(f"no deploy.yaml at {config}", hint="see deploy.yaml.example")
    loaded = configuration.load(config_file) if config_file is not None else None
    path = Path(model_path) if model_path is not None else None
    model_name = name
    signature, tolerance = DEFAULT_SIGNATURE, 1e-4
    if loaded is not None:
        path = path or loaded.model_path()
        model_name = model_name or loaded.model_name()
        signature = loaded.model.signature
        tolerance = loaded.verify.tolerance
    elif path is not None and not model_name:
        model_name = path.resolve().name
    project = Project(
        config=loaded,
        model_path=path,
        model_name=model_name,
        signature=signature,
        tolerance=tolerance,
    )
    return project


def names_target(name: str, *, config: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``name`` is a target of deploy.yaml (``config``, or ./deploy.yaml).

    Only the target names are read, leniently: a deploy.yaml with a mistake elsewhere does not
    stop a caller from learning that ``name`` is not one of its targets.
    """
    found = configuration.find(config) if config is not None else configuration.find()
    return found is not None and name in configuration.target_names(found)
