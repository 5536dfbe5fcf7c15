"""The bundles a ``connect`` target uploads, with manifests made by rsconnect-python.

Mode ``app`` (app mode ``python-fastapi``, entry point ``app:app``)::

    manifest.json        rsconnect.bundle.make_api_manifest
    requirements.txt     the same tfdeploy and TensorFlow as here (requirements.py)
    app.py               tfdeploy's REST app over the SavedModel (resources/app.py.txt)
    tfdeploy.json        the model's manifest: name, digest, signatures
    savedmodel/...       the SavedModel

Mode ``tensorflow`` (app mode ``tensorflow-saved-model``), the numbered-version layout::

    manifest.json        rsconnect.bundle.make_tensorflow_manifest
    1/saved_model.pb, 1/variables/...

rsconnect-python's own bundle writers stamp times, owners and (for TensorFlow) a hash-seeded
file order into the archive, so the archive is written by tfdeploy's deterministic
:func:`~tfdeploy.plugin.write_archive`: the same model and settings give the same bytes.
The manifests come from rsconnect-python itself, run over a staging directory of links to the
model's files (nothing is copied). Neither holds a credential: environment variables travel in
their own API call, never in a bundle.

:class:`BuildPlan` is what a bundle will be, known without reading the model (``plan`` and the
no-op check need no archive); its :attr:`~BuildPlan.fingerprint` covers everything the
archive's bytes depend on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from tfdeploy.plugin import Bundle, TargetError, model_files, write_archive
from tfdeploy_connect.requirements import installed_version, pinned_requirements

Mode = Literal["app", "tensorflow"]

#: Connect's app mode for each mode.
APP_MODES: dict[str, str] = {"app": "python-fastapi", "tensorflow": "tensorflow-saved-model"}
#: The app bundle's files besides the model.
APP_FILE, MODEL_FILE, REQUIREMENTS_FILE, MANIFEST_FILE = (
    "app.py",
    "tfdeploy.json",
    "requirements.txt",
    "manifest.json",
)
#: Where an app bundle holds the SavedModel.
SAVEDMODEL_DIR = "savedmodel"
ENTRYPOINT = "app:app"
#: The locale in the app's manifest (rsconnect would record this machine's).
LOCALE = "en_US.UTF-8"
#: Raised when the bundle layout changes, so older bundles are not taken for the same build.
LAYOUT = 1


def app_source() -> bytes:
    """The entry module of every app bundle, as written into it."""
    return resources.files("tfdeploy_connect").joinpath("resources/app.py.txt").read_bytes()


@dataclass(frozen=True)
class BuildPlan:
    """What a bundle of a model will hold, known before any file of the model is read."""

    mode: Mode
    digest: str
    model_prefix: str
    files: Mapping[str, bytes]
    environment: Mapping[str, str] | None
    python_requires: str | None

    @property
    def app_mode(self) -> str:
        """Connect's app mode of the bundle."""
        return APP_MODES[self.mode]

    @property
    def fingerprint(self) -> str:
        """A digest of everything the archive's bytes depend on (the model by its digest)."""
        data = {
            "layout": LAYOUT,
            "rsconnect": installed_version("rsconnect-python"),
            "mode": self.mode,
            "digest": self.digest,
            "model_prefix": self.model_prefix,
            "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(self.files.items())},
            "environment": dict(self.environment) if self.environment else None,
            "python_requires": self.python_requires,
        }
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(canonical).hexdigest()[:32]


def plan_bundle(
    bundle: Bundle, *, mode: Mode, model_name: str | None = None, python: str | None = None
) -> BuildPlan:
    """What the Connect bundle of ``bundle`` holds in ``mode`` (``python``: mode app only).

    In mode app the bundled app serves the model as ``model_name`` (the target's name for it,
    which its TF Serving route ``v1/models/<name>`` carries; default: the bundle's name).
    """
    manifest = dataclasses.replace(bundle.manifest, name=model_name or bundle.manifest.name)
    if mode == "tensorflow":
        return BuildPlan(mode, manifest.digest, str(manifest.version), {}, None, None)
    requirements = pinned_requirements(manifest.tensorflow_version)
    environment = {
        "contents": requirements,
        "filename": REQUIREMENTS_FILE,
        "locale": LOCALE,
        "package_manager": "pip",
        "pip": installed_version("pip") or "",
        "python": platform.python_version(),
        "source": "file",
    }
    files = {
        APP_FILE: app_source(),
        MODEL_FILE: manifest.to_json(),
        REQUIREMENTS_FILE: requirements.encode(),
    }
    return BuildPlan(mode, manifest.digest, SAVEDMODEL_DIR, files, environment, python)


@dataclass(frozen=True)
class BuiltBundle:
    """A bundle archive on disk, with its manifest and size."""

    path: Path
    manifest: dict[str, Any]
    size: int


def build_bundle(plan: BuildPlan, model_dir: Path, target: Path) -> BuiltBundle:
    """Write the bundle of ``plan`` (the SavedModel at ``model_dir``) at ``target``."""
    files = model_files(model_dir)
    model_entries = {f"{plan.model_prefix}/{f.relative_to(model_dir).as_posix()}": f for f in files}
    generated = {n: b for n, b in plan.files.items() if n != REQUIREMENTS_FILE}
    manifest, listed = _manifest(plan, generated, model_entries)
    left_out = sorted((set(model_entries) | set(generated)) - set(listed))
    if left_out:
        raise TargetError(
            f"rsconnect-python leaves {', '.join(left_out)} out of the bundle's manifest",
            hint="rename the files or folders it ignores (.git, __pycache__, renv, ...) in the "
            "SavedModel",
        )
    entries: dict[str, Path | bytes | None] = {
        MANIFEST_FILE: json.dumps(manifest, indent=2).encode(),
        **plan.files,
        **model_entries,
    }
    write_archive(target, entries.items())
    return BuiltBundle(target, manifest, target.stat().st_size)


def _manifest(
    plan: BuildPlan, generated: Mapping[str, bytes], model_entries: Mapping[str, Path]
) -> tuple[dict[str, Any], list[str]]:
    """rsconnect-python's manifest of the bundle, made over a staging directory of links."""
    from rsconnect.bundle import make_api_manifest, make_tensorflow_manifest
    from rsconnect.environment import Environment
    from rsconnect.models import AppModes

    with tempfile.TemporaryDirectory(prefix="tfdeploy-connect-") as staging:
        root = Path(staging)
        for name, data in generated.items():
            (root / name).write_bytes(data)
        for name, source in model_entries.items():
            _link(source, root / name)
        if plan.mode == "tensorflow":
            manifest = make_tensorflow_manifest(str(root), [], [])
            return dict(manifest), list(manifest.get("files", {}))
        assert plan.environment is not None
        environment = Environment.from_dict(
            dict(plan.environment), python_version_requirement=plan.python_requires
        )
        manifest, listed = make_api_manifest(
            str(root), ENTRYPOINT, AppModes.PYTHON_FASTAPI, environment, [], []
        )
        return dict(manifest), list(listed)


def _link(source: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(source.resolve())
    except OSError:  # a file system without symbolic links
        shutil.copyfile(source, link)
