"""Packaging: TF Serving layout, manifest, byte-identical builds, safe unpacking."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from tfdeploy.errors import BundleError
from tfdeploy.model.bundle import package, read_manifest, unpack_bundle
from tfdeploy.model.savedmodel import read_model_info


def test_bundle_layout_and_manifest(digits_savedmodel: Path, tmp_path: Path) -> None:
    bundle = package(digits_savedmodel, name="digits", version=3, output_dir=tmp_path)
    assert bundle.path == tmp_path / "digits-3.tar.gz"
    with tarfile.open(bundle.path) as tar:
        names = tar.getnames()
        assert "digits/3/saved_model.pb" in names
        assert any(n.startswith("digits/3/variables/variables.data") for n in names)
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tar.getmembers())
        assert names == sorted(names)
        raw = tar.extractfile("digits/tfdeploy.json")
        assert raw is not None
        manifest = json.loads(raw.read())
    info = read_model_info(digits_savedmodel)
    assert manifest["name"] == "digits" and manifest["version"] == 3
    assert manifest["digest"] == info.digest
    assert manifest["tensorflow_version"] == info.tensorflow_version
    assert manifest["tfdeploy_version"]
    assert set(manifest["signatures"]) == {"serving_default"}
    assert read_manifest(bundle.path).digest == info.digest


def test_same_files_give_the_same_bytes(digits_savedmodel: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(digits_savedmodel, copy)  # new inodes and timestamps
    first = package(digits_savedmodel, name="digits", output_dir=tmp_path / "a").path.read_bytes()
    second = package(copy, name="digits", output_dir=tmp_path / "b").path.read_bytes()
    assert first == second


def test_unpacked_bundle_loads_and_predicts(
    digits_savedmodel: Path, digits_instances: list, tmp_path: Path
) -> None:
    from tfdeploy import load_savedmodel, predict_savedmodel

    bundle = package(digits_savedmodel, name="digits", version=2, output_dir=tmp_path)
    unpacked = unpack_bundle(bundle.path, tmp_path / "out")
    assert unpacked.model_dir == tmp_path / "out" / "digits" / "2"
    assert unpacked.manifest is not None and unpacked.manifest.version == 2
    model = load_savedmodel(bundle.path)
    assert len(predict_savedmodel(digits_instances, model)) == len(digits_instances)


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (tarfile.TarInfo("../escape.txt"), "'..'"),
        (tarfile.TarInfo("model/../../escape.txt"), "'..'"),
        (tarfile.TarInfo("/etc/evil"), "absolute path"),
    ],
)
def test_unpacking_refuses_entries_that_leave_the_bundle(
    tmp_path: Path, member: tarfile.TarInfo, words: str
) -> None:
    archive = _evil_tar(tmp_path / "evil.tar.gz", member)
    with pytest.raises(BundleError, match="unsafe bundle") as err:
        unpack_bundle(archive, tmp_path / "dest")
    assert words in err.value.message
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_unpacking_refuses_links_that_point_outside(tmp_path: Path) -> None:
    link = tarfile.TarInfo("model/variables")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
    archive = _evil_tar(tmp_path / "evil.tar.gz", link)
    with pytest.raises(BundleError, match="points outside the bundle"):
        unpack_bundle(archive, tmp_path / "dest")


def test_a_damaged_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(BundleError, match="not a readable tar archive|damaged"):
        unpack_bundle(archive, tmp_path / "dest")


def test_invalid_names_are_refused(digits_savedmodel: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="invalid model name"):
        package(digits_savedmodel, name="../digits", output_dir=tmp_path)


def test_a_bundle_gives_targets_the_model_directory_and_the_archive_once_each(
    digits_savedmodel: Path,
) -> None:
    from tfdeploy.model.bundle import Bundle

    with Bundle.from_model(digits_savedmodel, name="digits", version=2) as bundle:
        assert bundle.model_dir == digits_savedmodel.resolve()  # no copy, no archive
        archive = bundle.path  # written now, on first use
        assert archive.name == "digits-2.tar.gz" and bundle.path == archive
        assert read_manifest(archive).digest == bundle.manifest.digest
    assert not archive.exists()  # the bundle removes what it wrote
    assert (digits_savedmodel / "saved_model.pb").is_file()  # and never the source

    built = package(digits_savedmodel, name="digits", output_dir=digits_savedmodel.parent / "b")
    with Bundle.open(built.path) as opened:
        unpacked = opened.model_dir  # unpacked once, whoever asks
        assert opened.model_dir == unpacked
        assert read_model_info(unpacked).digest == opened.manifest.digest
    assert not unpacked.exists()
    assert built.path.is_file()  # an archive the bundle did not write stays
