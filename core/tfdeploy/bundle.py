"""Bundles: a SavedModel packaged in TF Serving's layout with a manifest, as a ``.tar.gz``.

Layout inside the archive::

    NAME/tfdeploy.json        the manifest
    NAME/VERSION/saved_model.pb
    NAME/VERSION/variables/...

Building twice from the same files gives the same bytes: entries are sorted, and times,
owners and modes are fixed. Unpacking refuses absolute paths, ``..`` and links that leave the
bundle.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tfdeploy._version import __version__
from tfdeploy.errors import BundleError, ModelNotFoundError
from tfdeploy.savedmodel import read_model_info, resolve_model_dir
from tfdeploy.signatures import ModelInfo

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
            raise BundleError(f"the bundle manifest is incomplete: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON object."""
        return asdict(self)

    def to_json(self) -> bytes:
        """The manifest's bytes as written into the bundle (sorted keys, stable)."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Bundle:
    """A bundle archive on disk and its manifest."""

    path: Path
    manifest: Manifest

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
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


def package(
    model_path: str | os.PathLike[str],
    *,
    name: str,
    version: int = 1,
    output_dir: str | os.PathLike[str] = ".",
) -> Bundle:
    """Package the SavedModel at ``model_path`` as ``<output_dir>/<name>-<version>.tar.gz``."""
    check_name(name)
    if version < 1:
        raise BundleError(f"invalid version {version}", hint="versions are positive integers")
    info = read_model_info(model_path)
    manifest = Manifest.for_model(info, name=name, version=version)
    out_dir = Path(output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{version}.tar.gz"
    model_dir = Path(info.path)
    entries: list[tuple[str, Path | bytes | None]] = [
        (f"{name}", None),
        (f"{name}/{MANIFEST_NAME}", manifest.to_json()),
        (f"{name}/{version}", None),
    ]
    for f in info.files:
        entries.extend(
            (f"{name}/{version}/{parent}", None)
            for parent in PurePosixPath(f).parents
            if str(parent) != "."
        )
    entries.extend((f"{name}/{version}/{f}", model_dir / f) for f in info.files)
    _write_archive(target, entries)
    return Bundle(path=target, manifest=manifest)


def _write_archive(target: Path, entries: Iterable[tuple[str, Path | bytes | None]]) -> None:
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


def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if member.name.startswith("/") or path.is_absolute() or re.match(r"^[A-Za-z]:", member.name):
        raise BundleError(f"unsafe bundle: entry {member.name!r} is an absolute path")
    if ".." in path.parts:
        raise BundleError(f"unsafe bundle: entry {member.name!r} climbs out with '..'")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        resolved = link if member.islnk() else path.parent / link
        if link.is_absolute() or _escapes(resolved):
            raise BundleError(
                f"unsafe bundle: link {member.name!r} points outside the bundle ({member.linkname!r})"
            )
    elif not (member.isfile() or member.isdir()):
        raise BundleError(f"unsafe bundle: entry {member.name!r} is a device or pipe")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is not a readable tar archive: {exc}") from exc


def read_manifest(archive: str | os.PathLike[str]) -> Manifest:
    """Read a bundle's manifest without unpacking it."""
    with _open(Path(archive)) as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) == 2 and parts[1] == MANIFEST_NAME and member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                return Manifest.from_dict(json.loads(fh.read()))
    raise BundleError(
        f"{archive} has no {MANIFEST_NAME}", hint="build bundles with tfdeploy package"
    )


def unpack_bundle(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> UnpackedBundle:
    """Unpack a bundle (or any tar of a SavedModel) safely into ``dest``.

    Every entry is checked before anything is written.
    """
    archive, dest = Path(archive), Path(dest)
    with _open(archive) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"{archive} is damaged: {exc}") from exc
        for member in members:
            _check_member(member)
        dest.mkdir(parents=True, exist_ok=True)
        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; members were checked above
                tar.extractall(dest)
        except (tarfile.TarError, OSError) as exc:
            raise BundleError(f"cannot unpack {archive}: {exc}") from exc
    manifests = sorted(dest.glob(f"*/{MANIFEST_NAME}"))
    if manifests:
        manifest = Manifest.from_dict(json.loads(manifests[0].read_text()))
        model_dir = manifests[0].parent / str(manifest.version)
        return UnpackedBundle(
            root=manifests[0].parent, model_dir=resolve_model_dir(model_dir), manifest=manifest
        )
    try:
        return UnpackedBundle(root=dest, model_dir=resolve_model_dir(dest), manifest=None)
    except ModelNotFoundError:
        children = [c for c in dest.iterdir() if c.is_dir()]
        if len(children) == 1:
            return UnpackedBundle(
                root=children[0], model_dir=resolve_model_dir(children[0]), manifest=None
            )
        raise ModelNotFoundError(f"{archive} holds no SavedModel") from None
