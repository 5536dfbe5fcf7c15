"""A bundle's manifest (``NAME/tfdeploy.json``): what it holds, checked strictly when read.

A manifest comes from a file someone else may have written, and its name and version become
paths (``NAME/VERSION/``, ``NAME-VERSION.tar.gz``, a version folder on a target). So every
field is checked for its type and range when a manifest is made or read, unknown fields are
refused, and an unpacked bundle's manifest must name the folder its model is in: a manifest
cannot point at anything outside its own bundle.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tfdeploy._version import __version__
from tfdeploy.errors import BundleError
from tfdeploy.model.signatures import ModelInfo

MANIFEST_NAME = "tfdeploy.json"
MANIFEST_SCHEMA = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Largest manifest read, in bytes (one holds a few signatures: kilobytes).
MAX_MANIFEST_BYTES = 1024 * 1024
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_VERSION = 2**63 - 1


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`BundleError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BundleError(
            f"invalid model name {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


def check_version(version: object) -> int:
    """Return ``version`` if it is a valid version number, else raise :class:`BundleError`."""
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= _MAX_VERSION
    ):
        raise BundleError(f"invalid version {version!r}", hint="versions are positive integers")
    return version


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: model name and version, signatures, digest and versions.

    Every field is checked when a manifest is made: a name that could be a path, a version
    that is not a positive integer, a digest that is not ``sha256:<64 hex>``, or a field of
    the wrong type raises :class:`BundleError`.
    """

    name: str
    version: int
    digest: str
    tensorflow_version: str
    tfdeploy_version: str
    signatures: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    schema: int = MANIFEST_SCHEMA

    def __post_init__(self) -> None:
        check_name(self.name)
        check_version(self.version)
        if not isinstance(self.digest, str) or not _DIGEST.match(self.digest):
            raise BundleError(f"the bundle manifest's digest {self.digest!r} is not sha256:<hex>")
        for key in ("tensorflow_version", "tfdeploy_version"):
            value = getattr(self, key)
            if not isinstance(value, str) or len(value) > 200:
                raise BundleError(f"the bundle manifest's {key} is not a short string")
        if not isinstance(self.signatures, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in self.signatures.items()
        ):
            raise BundleError("the bundle manifest's signatures are not an object of objects")
        size = self.size_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleError(f"the bundle manifest's size_bytes {size!r} is not a byte count")
        if isinstance(self.schema, bool) or not isinstance(self.schema, int) or self.schema < 1:
            raise BundleError(f"the bundle manifest's schema {self.schema!r} is not a number")
        if self.schema > MANIFEST_SCHEMA:
            raise BundleError(
                f"the bundle manifest has schema {self.schema}; this tfdeploy reads up to "
                f"{MANIFEST_SCHEMA}",
                hint="upgrade tfdeploy to read bundles made by newer versions",
            )

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
    def from_dict(cls, data: Any, *, where: str = "the bundle manifest") -> Manifest:
        """Read a manifest from its JSON object; missing, unknown or mistyped fields are errors
        whose message starts with ``where``."""
        if not isinstance(data, dict):
            raise BundleError(f"{where} is not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise BundleError(f"{where} has unknown fields: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            missing = sorted(f.name for f in fields(cls) if f.name not in data)
            raise BundleError(f"{where} lacks {', '.join(missing) or exc}") from exc
        except BundleError as exc:
            raise BundleError(f"{where}: {exc.message}", hint=exc.hint) from exc

    @classmethod
    def from_json(cls, raw: bytes | str, *, where: str = MANIFEST_NAME) -> Manifest:
        """Read a manifest from the bytes of ``tfdeploy.json``."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleError(f"{where} is larger than a manifest can be ({len(raw)} bytes)")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BundleError(f"{where} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, where=where)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON object."""
        return asdict(self)

    def to_json(self) -> bytes:
        """The manifest's bytes as written into the bundle (sorted keys, stable)."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def manifest_of_unpacked(root: Path, model_dir: Path, *, source: Path | str) -> Manifest | None:
    """The manifest of a bundle unpacked into ``root`` whose model was found at ``model_dir``.

    ``None`` when the archive has no manifest (a plain tar of a SavedModel). A manifest must sit
    in the model's base folder (``NAME/tfdeploy.json`` beside ``NAME/VERSION/``) and name that
    folder and that version, or the bundle is refused.
    """
    found = sorted(root.glob(f"*/{MANIFEST_NAME}")) + sorted(root.glob(MANIFEST_NAME))
    if not found:
        return None
    if len(found) > 1:
        raise BundleError(f"{source} holds {len(found)} manifests; a bundle has one")
    path = found[0]
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"cannot read the manifest of {source}: {exc.strerror}") from exc
    manifest = Manifest.from_json(raw, where=f"{source}: manifest {MANIFEST_NAME}")
    base = path.parent  # NAME/, or the archive's top when it holds NAME's contents
    named = base == root or base.name == manifest.name
    if not named or model_dir.resolve() != (base / str(manifest.version)).resolve():
        where = (
            model_dir.relative_to(root).as_posix() if model_dir.is_relative_to(root) else model_dir
        )
        raise BundleError(
            f"{source}: the manifest says {manifest.name} version {manifest.version}, but the "
            f"bundle's model is at {where or '.'}",
            hint="build bundles with tfdeploy package",
        )
    return manifest
