"""Reading tar archives safely: every entry is checked, and the whole bounded, before anything
is written.

Refused: absolute paths, ``..``, devices and pipes, links to anything but a regular file of
the same archive (a hard link to a missing name, a symbolic link to a folder or to another
link: no chain of links can lead outside), and archives that unpack to more than
:class:`UnpackLimits` allow (total bytes, number of entries, and how many times larger than
the archive they get: a 2 MB archive of zeros, or a sparse file, declaring gigabytes).
Links are written as copies, so the destination never holds a link. Used for bundles
(:mod:`tfdeploy.model.bundle`) and any ``.tar``/``.tar.gz`` a user points at.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tfdeploy.errors import BundleError

#: File name endings of the archives tfdeploy reads.
SUFFIXES = (".tar", ".tar.gz", ".tgz")

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True)
class UnpackLimits:
    """How much an archive may unpack to. Each has an environment variable to raise it.

    - ``max_bytes`` (``TFDEPLOY_MAX_UNPACKED_BYTES``, e.g. ``64G``): total size of the files.
    - ``max_files`` (``TFDEPLOY_MAX_UNPACKED_FILES``): number of entries.
    - ``max_ratio`` (``TFDEPLOY_MAX_UNPACKED_RATIO``): how many times larger than the archive
      the files may be, once they pass ``ratio_floor`` bytes (model weights hardly compress;
      a bomb of zeros or a sparse file does).
    """

    max_bytes: int = 16 * 1024**3
    max_files: int = 100_000
    max_ratio: float = 200.0
    ratio_floor: int = 64 * 1024**2

    @classmethod
    def from_env(cls) -> UnpackLimits:
        """The defaults, with any of the environment variables applied."""
        defaults = cls()
        return cls(
            max_bytes=_env_size("TFDEPLOY_MAX_UNPACKED_BYTES", defaults.max_bytes),
            max_files=int(_env_size("TFDEPLOY_MAX_UNPACKED_FILES", defaults.max_files)),
            max_ratio=float(os.environ.get("TFDEPLOY_MAX_UNPACKED_RATIO") or defaults.max_ratio),
        )


def _env_size(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip().upper().removesuffix("B").removesuffix("I")
    if not text:
        return default
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)", text)
    if match is None:
        raise BundleError(f"{name}={os.environ[name]!r} is not a size", hint="write e.g. 64G")
    return int(match[1]) * _UNITS[match[2]]


def is_archive(path: Path) -> bool:
    """Whether ``path`` names an archive by its suffix."""
    return path.name.endswith(SUFFIXES)


_REBUILD = "build the bundle again with `tfdeploy package`, or tar the SavedModel folder"
_UNSAFE = "nothing was unpacked; build bundles with `tfdeploy package` and unpack only trusted ones"


def open_archive(archive: Path) -> tarfile.TarFile:
    """Open a (possibly compressed) tar archive for reading, or raise :class:`BundleError`."""
    try:
        return tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is not a readable tar archive: {exc}", hint=_REBUILD) from exc


def extract(archive: Path, dest: Path, *, limits: UnpackLimits | None = None) -> None:
    """Unpack ``archive`` into ``dest`` after checking every entry and the total."""
    limits = limits or UnpackLimits.from_env()
    packed = archive.stat().st_size
    with open_archive(archive) as tar:
        members = _checked_members(tar, archive, limits)
        files = {_name(m): m for m in members if m.isfile()}
        sources: dict[str, tarfile.TarInfo] = {}
        total = 0
        for member in members:
            if member.issym() or member.islnk():
                target = _link_target(member)
                if target not in files:
                    kind = "hard" if member.islnk() else "symbolic"
                    raise BundleError(
                        f"unsafe bundle: {kind} link {member.name!r} points at "
                        f"{member.linkname!r}, which is not a file in the archive",
                        hint=_UNSAFE,
                    )
                sources[_name(member)] = files[target]
                total += files[target].size
            elif member.isfile():
                total += member.size
            _check_total(total, len(members), packed, archive, limits)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        try:
            for member in members:
                name = _name(member)
                if name == ".":
                    continue
                path = root.joinpath(*PurePosixPath(name).parts)
                if path.is_symlink() or not path.parent.resolve().is_relative_to(root):
                    raise BundleError(
                        f"unsafe bundle: {member.name!r} would be written through a link in {dest}",
                        hint=_UNSAFE,
                    )
                if member.isdir():
                    path.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                source = sources.get(name, member)
                fh = tar.extractfile(source)
                if fh is None:  # pragma: no cover - regular files always have data
                    raise BundleError(f"cannot read {member.name!r} in {archive}", hint=_REBUILD)
                path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                if path.is_dir():
                    raise BundleError(
                        f"unsafe bundle: {member.name!r} is both a folder and a file", hint=_UNSAFE
                    )
                with fh, path.open("wb") as out:
                    shutil.copyfileobj(fh, out, 1024 * 1024)
                path.chmod(0o644)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"cannot unpack {archive}: {exc}", hint=_REBUILD) from exc


def _checked_members(
    tar: tarfile.TarFile, archive: Path, limits: UnpackLimits
) -> list[tarfile.TarInfo]:
    """The archive's entries, each checked, reading no more headers than ``max_files``."""
    members: list[tarfile.TarInfo] = []
    try:
        while (member := tar.next()) is not None:
            if len(members) >= limits.max_files:
                raise BundleError(
                    f"{archive} holds more than {limits.max_files} entries",
                    hint="set TFDEPLOY_MAX_UNPACKED_FILES to allow more",
                )
            check_member(member)
            members.append(member)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"{archive} is damaged: {exc}", hint=_REBUILD) from exc
    return members


def _check_total(total: int, count: int, packed: int, archive: Path, limits: UnpackLimits) -> None:
    if total > limits.max_bytes:
        raise BundleError(
            f"{archive} unpacks to more than {limits.max_bytes} bytes ({count} entries read)",
            hint="set TFDEPLOY_MAX_UNPACKED_BYTES (e.g. 64G) to allow more",
        )
    if total > limits.ratio_floor and total > limits.max_ratio * max(packed, 1):
        raise BundleError(
            f"{archive} ({packed} bytes) unpacks to more than {total} bytes, over "
            f"{limits.max_ratio:g} times its size: refused as a decompression bomb",
            hint="set TFDEPLOY_MAX_UNPACKED_RATIO to allow archives that compress this well",
        )


def check_member(member: tarfile.TarInfo) -> None:
    """Raise :class:`BundleError` for an entry that could write outside the destination."""
    path = PurePosixPath(member.name)
    if member.name.startswith("/") or path.is_absolute() or re.match(r"^[A-Za-z]:", member.name):
        raise BundleError(f"unsafe bundle: entry {member.name!r} is an absolute path", hint=_UNSAFE)
    if ".." in path.parts:
        raise BundleError(
            f"unsafe bundle: entry {member.name!r} climbs out with '..'", hint=_UNSAFE
        )
    if "\x00" in member.name:
        raise BundleError(
            f"unsafe bundle: entry {member.name!r} has a NUL in its name", hint=_UNSAFE
        )
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        resolved = link if member.islnk() else path.parent / link
        if link.is_absolute() or _escapes(resolved):
            raise BundleError(
                f"unsafe bundle: link {member.name!r} points outside the bundle "
                f"({member.linkname!r})",
                hint=_UNSAFE,
            )
    elif not (member.isfile() or member.isdir()):
        raise BundleError(f"unsafe bundle: entry {member.name!r} is a device or pipe", hint=_UNSAFE)


def _name(member: tarfile.TarInfo) -> str:
    return posixpath.normpath(member.name)


def _link_target(member: tarfile.TarInfo) -> str:
    if member.islnk():
        return posixpath.normpath(member.linkname)
    return posixpath.normpath(posixpath.join(posixpath.dirname(_name(member)), member.linkname))


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False
