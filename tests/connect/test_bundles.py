"""The bundles the connect target uploads: rsconnect-python's manifests, tfdeploy's bytes.

Checked without a server: the layout of each mode, the manifests against what
rsconnect-python's own functions make of the same files, the pinned requirements, and that
the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import tarfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from rsconnect.bundle import make_api_manifest, make_tensorflow_manifest
from rsconnect.environment import Environment
from rsconnect.models import AppModes
from tfdeploy_connect.bundles import (
    BuildPlan,
    BuiltBundle,
    app_source,
    build_bundle,
    plan_bundle,
)

from tfdeploy.plugin import Bundle


def build(bundle: Bundle, tmp_path: Path, name: str, **options: Any) -> BuiltBundle:
    """Plan and write a bundle of ``bundle`` at tmp_path/name."""
    plan = plan_bundle(bundle, **options)
    return build_bundle(plan, bundle.model_dir, tmp_path / name)


def members(path: Path) -> dict[str, bytes]:
    """Every file of a tar.gz by name."""
    with tarfile.open(path, "r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def model_members(digits_savedmodel: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}/{p.relative_to(digits_savedmodel).as_posix()}": p.read_bytes()
        for p in digits_savedmodel.rglob("*")
        if p.is_file()
    }


def test_a_tensorflow_bundle_is_numbered_versions_with_rsconnects_tensorflow_manifest(
    digits_bundle: Bundle, digits_savedmodel: Path, tmp_path: Path
) -> None:
    built = build(digits_bundle, tmp_path, "tf.tar.gz", mode="tensorflow")
    files = members(built.path)
    shutil.copytree(digits_savedmodel, tmp_path / "by-hand" / "1")

    expected_model = model_members(digits_savedmodel, "1")
    assert set(files) == {"manifest.json", *expected_model}
    assert all(files[name] == data for name, data in expected_model.items())
    manifest = json.loads(files["manifest.json"])
    assert manifest == make_tensorflow_manifest(str(tmp_path / "by-hand"), [], [])
    assert manifest["metadata"]["appmode"] == "tensorflow-saved-model"
    assert files["manifest.json"] == json.dumps(manifest, indent=2).encode()
    assert built.size == built.path.stat().st_size


def test_an_app_bundle_holds_the_app_the_model_and_pinned_requirements_with_rsconnects_manifest(
    digits_bundle: Bundle, digits_savedmodel: Path, tmp_path: Path
) -> None:
    built = build(digits_bundle, tmp_path, "app.tar.gz", mode="app", python=">=3.10")
    files = members(built.path)

    expected_model = model_members(digits_savedmodel, "savedmodel")
    assert set(files) == {
        "manifest.json",
        "requirements.txt",
        "app.py",
        "tfdeploy.json",
        *expected_model,
    }
    assert all(files[name] == data for name, data in expected_model.items())
    assert files["app.py"] == app_source()
    assert json.loads(files["tfdeploy.json"])["digest"] == digits_bundle.manifest.digest
    # The same manifest rsconnect-python makes of the same files, with the same environment.
    by_hand = tmp_path / "by-hand"
    shutil.copytree(digits_savedmodel, by_hand / "savedmodel")
    for name in ("app.py", "tfdeploy.json"):
        (by_hand / name).write_bytes(files[name])
    environment = Environment.from_dict(
        {
            "contents": files["requirements.txt"].decode(),
            "filename": "requirements.txt",
            "locale": "en_US.UTF-8",
            "package_manager": "pip",
            "pip": metadata.version("pip"),
            "python": platform.python_version(),
            "source": "file",
        },
        python_version_requirement=">=3.10",
    )
    expected, _ = make_api_manifest(
        str(by_hand), "app:app", AppModes.PYTHON_FASTAPI, environment, [], []
    )
    manifest = json.loads(files["manifest.json"])
    assert manifest == expected
    assert manifest["metadata"] == {"appmode": "python-fastapi", "entrypoint": "app:app"}
    assert manifest["environment"]["python"]["requires"] == ">=3.10"
    assert manifest["python"]["version"] == platform.python_version()
    checksum = manifest["files"]["requirements.txt"]["checksum"]
    assert checksum == hashlib.md5(files["requirements.txt"]).hexdigest()


def test_the_requirements_pin_the_tfdeploy_and_tensorflow_installed_here(
    digits_bundle: Bundle,
) -> None:
    plan = plan_bundle(digits_bundle, mode="app")
    text = plan.files["requirements.txt"].decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    requirements = {Requirement(line).name: Requirement(line) for line in lines}

    assert set(requirements) == {"tfdeploy-kit", "tensorflow"}
    tfdeploy = requirements["tfdeploy-kit"]
    assert tfdeploy.extras == {"serve"}
    assert str(tfdeploy.specifier) == f"=={metadata.version('tfdeploy-kit')}"
    assert str(requirements["tensorflow"].specifier) == f"=={metadata.version('tensorflow')}"
    # A checkout is installed from file:// here; Connect could not reach that path.
    assert "file:" not in text and "-e " not in text and tfdeploy.url is None


def test_the_entry_module_is_data_for_the_bundle_and_compiles(tmp_path: Path) -> None:
    source = app_source()
    compile(source, "app.py", "exec")
    package = Path(__import__("tfdeploy_connect").__file__).parent
    assert not list(package.rglob("app.py")), "the entry module must not be a module of the plugin"
    assert b"from tfdeploy.server import create_app" in source


@pytest.mark.parametrize("mode", ["app", "tensorflow"])
def test_the_same_inputs_give_the_same_bytes(
    digits_bundle: Bundle, digits_savedmodel: Path, tmp_path: Path, mode: str
) -> None:
    first = build(digits_bundle, tmp_path, "a.tar.gz", mode=mode)
    # The same model from another folder, with other file times, read again from scratch.
    copy = tmp_path / "copy"
    shutil.copytree(digits_savedmodel, copy, copy_function=shutil.copy)
    again = build(Bundle.from_model(copy, name="digits"), tmp_path, "b.tar.gz", mode=mode)

    assert first.path.read_bytes() == again.path.read_bytes()
    assert (
        plan_bundle(digits_bundle, mode=mode).fingerprint
        == plan_bundle(Bundle.from_model(copy, name="digits"), mode=mode).fingerprint
    )  # type: ignore[arg-type]


def test_the_fingerprint_changes_with_everything_the_bytes_depend_on(
    digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    plans: list[BuildPlan] = [
        plan_bundle(digits_bundle, mode="app"),
        plan_bundle(digits_bundle, mode="app", python=">=3.10"),
        plan_bundle(digits_bundle, mode="tensorflow"),
        plan_bundle(digits_bundle_changed, mode="app"),
        plan_bundle(digits_bundle_changed, mode="tensorflow"),
    ]
    assert len({p.fingerprint for p in plans}) == len(plans)


def test_a_bundle_holds_no_secret_of_the_publisher(
    digits_bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "publisher-key-0123456789abcdef"
    monkeypatch.setenv("CONNECT_API_KEY", key)
    built = build(digits_bundle, tmp_path, "app.tar.gz", mode="app")

    raw = built.path.read_bytes()
    unpacked = b"".join(members(built.path).values())
    assert key.encode() not in raw and key.encode() not in unpacked
    assert b"CONNECT_API_KEY" not in unpacked


def test_an_archive_is_written_by_tfdeploy_not_by_rsconnects_tar_writer(
    digits_bundle: Bundle, tmp_path: Path
) -> None:
    built = build(digits_bundle, tmp_path, "app.tar.gz", mode="app")
    with tarfile.open(fileobj=io.BytesIO(built.path.read_bytes()), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert [m.name for m in infos] == sorted(m.name for m in infos)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in infos} == {(0, 0, 0, "", "")}
    assert built.path.read_bytes()[4:8] == b"\0\0\0\0"  # no time in the gzip header
