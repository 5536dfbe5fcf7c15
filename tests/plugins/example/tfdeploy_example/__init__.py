"""A minimal tfdeploy plugin: target ``example`` keeps versions in a local folder.

``<path>/<model>/<n>/`` holds version ``n``; ``<path>/<model>/CURRENT`` names the version that
serves, replaced in one step, so a half-copied version is never current. Predictions load the
current version in this process.

This file is the template for a new target: copy it, rename, and replace the folder logic
with your service's calls. docs/plugins.md walks through it line by line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from tfdeploy.plugin import (
    Bundle,
    Check,
    DeployResult,
    ExtraCheck,
    ModelInfo,
    RegisterTarget,
    Status,
    Target,
    TargetConfig,
    TargetError,
    VersionStatus,
    content_digest,
    hookimpl,
    model_files,
)


class ExampleConfig(TargetConfig):
    """Settings of an ``example`` target."""

    path: str = Field(description="Folder that holds one sub-folder of versions per model.")
    max_bytes: int = Field(default=50_000_000, description="Largest model accepted, in bytes.")


class ExampleTarget(Target[ExampleConfig]):
    """A local folder of versions, predicting in-process (an example for plugin authors)."""

    Config = ExampleConfig

    @property
    def root(self) -> Path:
        """The model's folder."""
        return Path(self.config.path) / self.model_name

    def _current(self) -> int | None:
        marker = self.root / "CURRENT"
        return int(marker.read_text()) if marker.is_file() else None

    def _set_current(self, version: int) -> None:
        tmp = self.root / f".CURRENT.{os.getpid()}"
        tmp.write_text(str(version))
        os.replace(tmp, self.root / "CURRENT")

    def _versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def deploy(self, bundle: Bundle) -> DeployResult:
        """Copy the model as the next version, then make it current in one step."""
        current = self._current()
        if (
            current is not None
            and content_digest(self.root / str(current)) == bundle.manifest.digest
        ):
            return DeployResult(status=self.status(), changed=False, message="unchanged")
        version = max(self._versions(), default=0) + 1
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            model_dir = bundle.model_dir
            files = model_files(model_dir)
            total, done = sum(f.stat().st_size for f in files), 0
            target = staging / "model"
            for f in files:
                dest = target / f.relative_to(model_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
                done += f.stat().st_size
                self.progress.advance(done, total)
            os.rename(target, self.root / str(version))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._set_current(version)
        return DeployResult(status=self.status(), changed=True, bytes_sent=done)

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Load the current version and answer."""
        # Imported here, not at the top: loading a model brings numpy (and TensorFlow), which
        # commands such as `tfdeploy status` never need, and they load every plugin.
        from tfdeploy.plugin import load_savedmodel

        current = self._current()
        if current is None:
            raise TargetError(f"nothing is deployed in {self.root}")
        model = load_savedmodel(self.root / str(current))
        return model.predict(dict(request))

    def status(self) -> Status:
        """The current version and its digest."""
        current = self._current()
        versions = tuple(
            VersionStatus(str(v), "serving" if v == current else "absent")
            for v in reversed(self._versions())
        )
        if current is None:
            return Status(self.name, self.plugin, self.model_name, "absent", versions=versions)
        return Status(
            self.name,
            self.plugin,
            self.model_name,
            "serving",
            version=str(current),
            digest=content_digest(self.root / str(current)),
            url=self.root.as_uri(),
            versions=versions,
        )

    def rollback(self, to: str | None = None, *, discard: bool = False) -> Status:
        """Make the version before the current one (or ``to``) current again.

        The newer versions stay in the folder, so ``rollback(to=...)`` can make one of them
        current again (a roll forward), unless ``discard`` deletes them.
        """
        current = self._current()
        earlier = [v for v in self._versions() if current is not None and v < current]
        goal = int(to) if to and to.isdigit() else (max(earlier) if earlier and not to else None)
        if goal is None or goal not in self._versions():
            raise TargetError(f"no version {to or 'before the current one'} to roll back to")
        self._set_current(goal)
        if discard:
            for v in self._versions():
                if v > goal:
                    shutil.rmtree(self.root / str(v))
        return self.status()


@hookimpl
def register_targets(register: RegisterTarget) -> None:
    """Register ``example`` (alias ``example-dir``)."""
    register("example", ExampleTarget, aliases=["example-dir"])


@hookimpl
def target_checks(target: Target[Any]) -> list[ExtraCheck] | None:
    """For example targets: the model must fit in ``max_bytes``."""
    if not isinstance(target, ExampleTarget):
        return None
    limit = target.config.max_bytes

    def size(info: ModelInfo) -> list[Check]:
        if info.size_bytes > limit:
            return [
                Check(
                    "example: size", "FAIL", f"{info.size_bytes} bytes > {limit}", "raise max_bytes"
                )
            ]
        return [Check("example: size", "PASS", f"{info.size_bytes} bytes")]

    return [size]
