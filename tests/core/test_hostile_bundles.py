"""Hostile bundles: manifests that point outside, links that chain, missing link targets,
archives that unpack to far more than they weigh; each refused with a BundleError, by every
command and function that reads a bundle, before anything outside is touched."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tfdeploy.errors import BundleError
from tfdeploy.model.bundle import Bundle, package, read_manifest, unpack_bundle
from tfdeploy.model.savedmodel import model_files, read_model_info


def _entries(model: Path, prefix: str) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    for f in model_files(model):
        out.append((f"{prefix}/{f.relative_to(model).as_posix()}", f.read_bytes()))
    return out


def write_tar(path: Path, entries: list[tuple[Any, ...]]) -> Path:
    """Entries: (name, bytes) files, (name, None) folders, (name, "sym"|"hard", target) links."""
    with tarfile.open(path, "w:gz") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            if len(entry) == 3:
                info.type = tarfile.SYMTYPE if entry[1] == "sym" else tarfile.LNKTYPE
                info.linkname = entry[2]
                tar.addfile(info)
            elif entry[1] is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return path


def manifest_bytes(digits_savedmodel: Path, **changes: Any) -> bytes:
    good = json.loads(
        package(
            digits_savedmodel, name="digits", output_dir=digits_savedmodel.parent / "m"
        ).manifest.to_json()
    )
    good.update(changes)
    for key in [k for k, v in changes.items() if v is _DROP]:
        del good[key]
    return json.dumps(good).encode()


_DROP = object()

EVIL_MANIFESTS = [
    {"version": "../.."},
    {"version": "/tmp/outside"},
    {"version": "1/../../outside"},
    {"version": "1"},
    {"version": 1.0},
    {"version": True},
    {"version": 0},
    {"version": -3},
    {"version": 2**64},
    {"name": "../digits"},
    {"name": "/abs"},
    {"name": "digits/1"},
    {"name": ""},
    {"name": 7},
    {"digest": "../x"},
    {"digest": None},
    {"signatures": "everything"},
    {"size_bytes": -1},
    {"schema": 99},
    {"surprise": 1},
    {"version": _DROP},
]


@pytest.mark.parametrize("changes", EVIL_MANIFESTS, ids=lambda c: json.dumps(c, default=str))
def test_a_manifest_that_is_not_strictly_valid_is_refused_everywhere(
    digits_savedmodel: Path, tmp_path: Path, changes: dict[str, Any]
) -> None:
    archive = write_tar(
        tmp_path / "evil.tar.gz",
        [
            ("digits", None),
            ("digits/tfdeploy.json", manifest_bytes(digits_savedmodel, **changes)),
            *_entries(digits_savedmodel, "digits/1"),
        ],
    )
    with pytest.raises(BundleError):
        read_manifest(archive)
    with pytest.raises(BundleError):
        unpack_bundle(archive, tmp_path / "dest")
    with pytest.raises(BundleError):
        read_model_info(archive)  # what inspect, predict, load_savedmodel and serve read
    with pytest.raises(BundleError):
        Bundle.open(archive)


def test_a_manifest_naming_another_version_than_the_bundle_holds_is_refused(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = write_tar(
        tmp_path / "evil.tar.gz",
        [
            ("digits/tfdeploy.json", manifest_bytes(digits_savedmodel, version=5)),
            *_entries(digits_savedmodel, "digits/1"),
        ],
    )
    with pytest.raises(BundleError, match="the manifest says digits version 5"):
        unpack_bundle(archive, tmp_path / "dest")
    with pytest.raises(BundleError, match="version 5"):
        read_model_info(archive)
    # ...and a manifest in a folder of another name.
    archive = write_tar(
        tmp_path / "renamed.tar.gz",
        [
            ("other/tfdeploy.json", manifest_bytes(digits_savedmodel)),
            *_entries(digits_savedmodel, "other/1"),
        ],
    )
    with pytest.raises(BundleError):
        read_manifest(archive)
    with pytest.raises(BundleError):
        unpack_bundle(archive, tmp_path / "dest2")


def test_commands_that_read_a_bundle_say_so_in_one_line(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    import sys

    archive = write_tar(
        tmp_path / "evil.tar.gz",
        [
            ("digits/tfdeploy.json", manifest_bytes(digits_savedmodel, version="../..")),
            *_entries(digits_savedmodel, "digits/1"),
        ],
    )
    for args in (["inspect", str(archive)], ["predict", "--model", str(archive), "--input", "-"]):
        run = subprocess.run(
            [sys.executable, "-m", "tfdeploy", *args],
            input="[[0.0]]",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 1, run.stderr
        assert "manifest" in run.stderr and "Traceback" not in run.stderr
        assert "internal error" not in run.stderr


def test_a_hard_link_to_a_missing_name_is_a_bundle_error(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "evil.tar.gz", [("m/saved_model.pb", b"x"), ("m/copy", "hard", "m/nothere")]
    )
    with pytest.raises(BundleError, match="not a file in the archive"):
        unpack_bundle(archive, tmp_path / "dest")


@pytest.mark.parametrize(
    "links",
    [
        [("m/a", "sym", "."), ("m/b", "sym", "a/..")],  # a chain that climbs out
        [("m/a", "sym", "."), ("m/a/../../x", b"x")],
        [("m/d", "sym", "variables")],  # a link to a folder
        [("m/a", "sym", "saved_model.pb"), ("m/b", "sym", "a")],  # a link to a link
        [("m/a", "hard", "m/variables")],
        [("m/a", "sym", "nothere")],
    ],
)
def test_links_may_only_name_a_regular_file_of_the_archive(
    tmp_path: Path, links: list[tuple[Any, ...]]
) -> None:
    archive = write_tar(
        tmp_path / "evil.tar.gz",
        [("m/saved_model.pb", b"x"), ("m/variables", None), ("m/variables/v", b"y"), *links],
    )
    with pytest.raises(BundleError, match="unsafe bundle"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "x").exists()


def test_links_to_files_of_the_archive_are_written_as_copies(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    archive = write_tar(
        tmp_path / "links.tar.gz",
        [
            *_entries(digits_savedmodel, "m"),
            ("m/assets.extra/pb-copy", "sym", "../saved_model.pb"),
            ("m/assets.extra/hard-copy", "hard", "m/saved_model.pb"),
        ],
    )
    unpacked = unpack_bundle(archive, tmp_path / "dest")
    for name in ("pb-copy", "hard-copy"):
        copy = unpacked.model_dir / "assets.extra" / name
        assert not copy.is_symlink()
        assert copy.read_bytes() == (digits_savedmodel / "saved_model.pb").read_bytes()
    assert not any(p.is_symlink() for p in (tmp_path / "dest").rglob("*"))


def test_an_archive_that_unpacks_to_far_more_than_it_weighs_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zeros = bytes(80 * 1024 * 1024)  # compresses about a thousand times
    archive = write_tar(tmp_path / "bomb.tar.gz", [("m/saved_model.pb", b"x"), ("m/zeros", zeros)])
    assert archive.stat().st_size < 1024 * 1024
    with pytest.raises(BundleError, match="decompression bomb"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "dest" / "m" / "zeros").exists()
    monkeypatch.setenv("TFDEPLOY_MAX_UNPACKED_BYTES", "1M")
    with pytest.raises(BundleError, match="unpacks to more than 1048576 bytes"):
        unpack_bundle(archive, tmp_path / "dest")
    # Both limits can be raised for archives that really are that large.
    monkeypatch.setenv("TFDEPLOY_MAX_UNPACKED_BYTES", "1G")
    monkeypatch.setenv("TFDEPLOY_MAX_UNPACKED_RATIO", "100000")
    archive_small = write_tar(
        tmp_path / "ok.tar.gz", [("m/saved_model.pb", b"x"), ("m/zeros", bytes(1000))]
    )
    unpack_bundle(archive_small, tmp_path / "ok")
    unpack_bundle(archive, tmp_path / "dest-raised")
    assert (tmp_path / "dest-raised" / "m" / "zeros").stat().st_size == len(zeros)


def test_a_sparse_file_declaring_gigabytes_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src" / "m"
    src.mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"x")
    with (src / "hole").open("wb") as fh:
        fh.truncate(10 * 1024**3)  # 10 GB, all hole
    archive = tmp_path / "sparse.tar.gz"
    subprocess.run(
        ["tar", "--sparse", "-czf", str(archive), "-C", str(src.parent), "m"], check=True
    )
    assert archive.stat().st_size < 100_000
    with pytest.raises(BundleError, match="unpacks to more than|decompression bomb"):
        unpack_bundle(archive, tmp_path / "dest")
    assert not (tmp_path / "dest" / "m" / "hole").exists()


def test_an_archive_of_too_many_entries_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_tar(
        tmp_path / "many.tar.gz",
        [(f"m/f{i}", b"") for i in range(60)] + [("m/saved_model.pb", b"")],
    )
    monkeypatch.setenv("TFDEPLOY_MAX_UNPACKED_FILES", "50")
    with pytest.raises(BundleError, match="more than 50 entries"):
        unpack_bundle(archive, tmp_path / "dest")
    with pytest.raises(BundleError):
        read_manifest(archive)
