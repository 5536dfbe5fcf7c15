"""Reading tar archives safely: every entry is checked before anything is written.

Refused: absolute paths, ``..``, links that leave the archive, devices and pipes. Used for
bundles (:mod:`tfdeploy.model.bundle`) and for any ``.tar``/``.tar.gz`` a user points at.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath

from tfdeploy.errors import BundleError

#: File name endings of the archives tfdeploy reads.
SUFFIXES = (".tar", ".tar.gz", ".tgz")


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


def extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest`` after checking every entry."""
    with open_archive(archive) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleError(f"{archive} is damaged: {exc}", hint=_REBUILD) from exc
        for member in members:
            check_member(member)
        dest.mkdir(parents=True, exist_ok=True)
        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; members were checked above
                tar.extractall(dest)
        except (tarfile.TarError, OSError) as exc:
            raise BundleError(f"cannot unpack {archive}: {exc}", hint=_REBUILD) from exc


def check_member(member: tarfile.TarInfo) -> None:
    """Raise :class:`BundleError` for an entry that could write outside the destination."""
    path = PurePosixPath(member.name)
    if member.name.startswith("/") or path.is_absolute() or re.match(r"^[A-Za-z]:", member.name):
        raise BundleError(f"unsafe bundle: entry {member.name!r} is an absolute path", hint=_UNSAFE)
    if ".." in path.parts:
        raise BundleError(
            f"unsafe bundle: entry {member.name!r} climbs out with '..'", hint=_UNSAFE
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


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False
