"""Bundles: a SavedModel packaged in TF Serving's layout with a manifest, as a ``.tar.gz``.

Layout inside the archive::

    NAME/tfdeploy.json        the manifest
    NAME/VERSION/saved_model.pb
    NAME/VERSION/variables/...

Building twice from the same files gives the same bytes: entries are sorted, and times,
owners and modes are fixed. Unpacking refuses absolute paths, ``..`` and links that leave the
bundle (:mod:`tfdeploy.model.archive`).

A :class:`Bundle` is what deploy targets receive: its :attr:`~Bundle.manifest`, its SavedModel
directory (:attr:`~Bundle.model_dir`) and its archive (:attr:`~Bundle.path`). Each is made at
most once, on first use, whoever asks: a target that copies files never waits for an archive,
and no target unpacks the archive itself.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tfdeploy.errors import BundleError
from tfdeploy.model import archive, workdir
from tfdeploy.model.manifest import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    MAX_MANIFEST_BYTES,
    NAME_PATTERN,
    Manifest,
    check_name,
    check_version,
    manifest_of_unpacked,
)
from tfdeploy.model.savedmodel import find_in_unpacked, model_files, read_model_info

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "NAME_PATTERN",
    "Bundle",
    "Manifest",
    "UnpackedBundle",
    "check_name",
    "package",
    "read_manifest",
    "unpack_bundle",
    "write_archive",
]


class Bundle:
    """A model ready to deploy: its manifest, its SavedModel directory and its archive.

    Made by :func:`package` (from a SavedModel directory, archive written), :meth:`from_model`
    (archive written only if someone asks for :attr:`path`) or :meth:`open` (an existing
    archive, unpacked only if someone asks for :attr:`model_dir`). Safe to share between
    threads. :meth:`close` removes what the bundle wrote or unpacked for itself.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        path: str | os.PathLike[str] | None = None,
        model_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if path is None and model_dir is None:
            raise ValueError("a bundle needs an archive path, a model directory, or both")
        self.manifest = manifest
        self._path = Path(path) if path is not None else None
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._workdir: Path | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_model(
        cls, model_path: str | os.PathLike[str], *, name: str, version: int = 1
    ) -> Bundle:
        """The SavedModel at ``model_path`` as bundle ``name`` version ``version``.

        Reads the model's info and digest; writes no archive until :attr:`path` is asked for.
        """
        check_name(name)
        check_version(version)
        info = read_model_info(model_path)
        return cls(Manifest.for_model(info, name=name, version=version), model_dir=info.path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Bundle:
        """An existing bundle archive; its model is unpacked when first asked for."""
        return cls(read_manifest(path), path=path)

    @property
    def path(self) -> Path:
        """The ``.tar.gz`` archive, written into a private directory on first use if needed."""
        with self._lock:
            if self._path is None:
                assert self._model_dir is not None
                out = self._private_dir() / f"{self.manifest.name}-{self.manifest.version}.tar.gz"
                _write_bundle(out, self._model_dir, self.manifest)
                self._path = out
            return self._path

    @property
    def model_dir(self) -> Path:
        """The SavedModel directory, unpacked from the archive on first use if needed."""
        with self._lock:
            if self._model_dir is None:
                assert self._path is not None
                self._model_dir = unpack_bundle(
                    self._path, self._private_dir() / "unpacked"
                ).model_dir
            return self._model_dir

    def _private_dir(self) -> Path:
        if self._workdir is None:
            self._workdir = workdir.make("bundle")
        return self._workdir

    def close(self) -> None:
        """Remove the archive or unpacked copy this bundle made for itself (not the sources)."""
        with self._lock:
            if self._workdir is not None:
                workdir.remove(self._workdir)
                if self._path is not None and self._path.is_relative_to(self._workdir):
                    self._path = None
                if self._model_dir is not None and self._model_dir.is_relative_to(self._workdir):
                    self._model_dir = None
                self._workdir = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Bundle {self.manifest.name} version {self.manifest.version} {self.manifest.digest}>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (writes the archive if it does not exist yet)."""
        return {
            "path": str(self.path),
            "bytes": self.path.stat().st_size,
            **self.manifest.to_dict(),
        }


@dataclass(frozen=True)
class UnpackedBundle:
    """A bundle unpacked into a directory: its base path, model directory and manifest."""

    root: Path
    model_dir: Path
    manifest: Manifest | None


def package(
    model_path: str | os.PathLike[str],
    *,
    name: str,
    version: int = 1,
    output_dir: str | os.PathLike[str] = ".",
) -> Bundle:
    """Package the SavedModel at ``model_path`` as ``<output_dir>/<name>-<version>.tar.gz``."""
    bundle = Bundle.from_model(model_path, name=name, version=version)
    out_dir = Path(output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{version}.tar.gz"
    _write_bundle(target, bundle.model_dir, bundle.manifest)
    return Bundle(bundle.manifest, path=target, model_dir=bundle.model_dir)


def _write_bundle(target: Path, model_dir: Path, manifest: Manifest) -> None:
    name, version = manifest.name, manifest.version
    files = [f.relative_to(model_dir).as_posix() for f in model_files(model_dir)]
    entries: list[tuple[str, Path | bytes | None]] = [
        (f"{name}", None),
        (f"{name}/{MANIFEST_NAME}", manifest.to_json()),
        (f"{name}/{version}", None),
    ]
    for f in files:
        entries.extend(
            (f"{name}/{version}/{parent}", None)
            for parent in PurePosixPath(f).parents
            if str(parent) != "."
        )
    entries.extend((f"{name}/{version}/{f}", model_dir / f) for f in files)
    write_archive(target, entries)


def write_archive(target: Path, entries: Iterable[tuple[str, Path | bytes | None]]) -> None:
    """Write a ``.tar.gz`` at ``target`` whose bytes depend only on ``entries``.

    Each entry is ``(name in the archive, content)``: a file's path, bytes, or ``None`` for a
    directory. Entries are sorted; times, owners and modes are fixed; the gzip header holds no
    time. The archive is written aside and renamed into place.
    """
    unique = dict(entries)
    workdir.sweep_aside(target)
    fd, tmp = tempfile.mkstemp(prefix=workdir.aside_prefix(target), dir=target.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for arcname in sorted(unique):
                content = unique[arcname]
                info = tarfile.TarInfo(arcname)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if content is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif isinstance(content, bytes):
                    info.size, info.mode = len(content), 0o644
                    tar.addfile(info, io.BytesIO(content))
                else:
                    info.size, info.mode = content.stat().st_size, 0o644
                    with content.open("rb") as fh:
                        tar.addfile(info, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a bundle's manifest without unpacking it (checked like :func:`unpack_bundle` does)."""
    limits = archive.UnpackLimits.from_env()
    with archive.open_archive(Path(path)) as tar:
        try:
            for count, member in enumerate(iter(tar.next, None)):
                if count >= limits.max_files:
                    break
                parts = PurePosixPath(member.name).parts
                if len(parts) == 2 and parts[1] == MANIFEST_NAME and member.isfile():
                    if member.size > MAX_MANIFEST_BYTES:
                        raise BundleError(f"{path}: {member.name} is too large for a manifest")
                    fh = tar.extractfile(member)
                    assert fh is not None
                    manifest = Manifest.from_json(
                        fh.read(), where=f"{path}: manifest {member.name}"
                    )
                    if parts[0] != manifest.name:
                        raise BundleError(
                            f"{path}: the manifest names {manifest.name!r} but sits in "
                            f"{parts[0]!r}/",
                            hint="build bundles with tfdeploy package",
                        )
                    return manifest
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"{path} is damaged: {exc}") from exc
    raise BundleError(f"{path} has no {MANIFEST_NAME}", hint="build bundles with tfdeploy package")


def unpack_bundle(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> UnpackedBundle:
    """Unpack a bundle (or any tar of a SavedModel) safely into ``dest``.

    Every entry is checked, and the total bounded (:class:`~tfdeploy.model.archive.UnpackLimits`),
    before anything is written. The SavedModel is found by the layout (``NAME/N/saved_model.pb``);
    a manifest must name that folder and version, or the bundle is refused.
    """
    source, dest = Path(path), Path(dest)
    archive.extract(source, dest)
    model_dir = find_in_unpacked(dest, source=source)
    manifest = manifest_of_unpacked(dest, model_dir, source=source)
    if manifest is not None:
        return UnpackedBundle(root=model_dir.parent, model_dir=model_dir, manifest=manifest)
    root = model_dir.parent if model_dir.parent != dest and model_dir.name.isdigit() else dest
    return UnpackedBundle(root=root, model_dir=model_dir, manifest=None)
