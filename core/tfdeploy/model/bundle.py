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
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tfdeploy._version import __version__
from tfdeploy.errors import BundleError
from tfdeploy.model import archive
from tfdeploy.model.savedmodel import find_in_unpacked, model_files, read_model_info
from tfdeploy.model.signatures import ModelInfo

MANIFEST_NAME = "tfdeploy.json"
MANIFEST_SCHEMA = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: model name and version, signatures, digest and versions."""

    name: str
    version: int
    digest: str
    tensorflow_version: str
    tfdeploy_version: str
    signatures: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    schema: int = MANIFEST_SCHEMA

    @classmethod
    def for_model(cls, info: ModelInfo, *, name: str, version: int) -> Manifest:
        """The manifest of ``info`` packaged as ``name`` version ``version``."""
        return cls(
            name=name,
            version=version,
            digest=info.digest,
            tensorflow_version=info.tensorflow_version,
            tfdeploy_version=__version__,
            signatures={n: s.to_dict() for n, s in info.signatures.items()},
            size_bytes=info.size_bytes,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Read a manifest from its JSON object."""
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise BundleError(
                f"the bundle manifest is incomplete: {exc}",
                hint="build the bundle again with `tfdeploy package`",
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON object."""
        return asdict(self)

    def to_json(self) -> bytes:
        """The manifest's bytes as written into the bundle (sorted keys, stable)."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()


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
        _check_version(version)
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
            self._workdir = Path(tempfile.mkdtemp(prefix="tfdeploy-bundle-"))
        return self._workdir

    def close(self) -> None:
        """Remove the archive or unpacked copy this bundle made for itself (not the sources)."""
        with self._lock:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
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


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`BundleError`."""
    if not NAME_PATTERN.match(name):
        raise BundleError(
            f"invalid model name {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"invalid version {version!r}", hint="versions are positive integers")


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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
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
    """Read a bundle's manifest without unpacking it."""
    with archive.open_archive(Path(path)) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) == 2 and parts[1] == MANIFEST_NAME and member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                return Manifest.from_dict(json.loads(fh.read()))
    raise BundleError(f"{path} has no {MANIFEST_NAME}", hint="build bundles with tfdeploy package")


def unpack_bundle(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> UnpackedBundle:
    """Unpack a bundle (or any tar of a SavedModel) safely into ``dest``.

    Every entry is checked before anything is written. The SavedModel is found by the layout
    (``NAME/N/saved_model.pb``), never by a path the manifest names.
    """
    source, dest = Path(path), Path(dest)
    archive.extract(source, dest)
    model_dir = find_in_unpacked(dest, source=source)
    manifests = sorted(dest.glob(f"*/{MANIFEST_NAME}"))
    if manifests:
        manifest = Manifest.from_dict(json.loads(manifests[0].read_text()))
        return UnpackedBundle(root=manifests[0].parent, model_dir=model_dir, manifest=manifest)
    root = model_dir.parent if model_dir.parent != dest and model_dir.name.isdigit() else dest
    return UnpackedBundle(root=root, model_dir=model_dir, manifest=None)
