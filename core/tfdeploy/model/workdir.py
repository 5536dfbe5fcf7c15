"""Private temporary directories that a killed process leaves behind, removed by the next one.

Each directory tfdeploy makes in the system's temporary folder (``tfdeploy-bundle-*``: an
archive written or a bundle unpacked) holds a ``.lock`` file that its process keeps locked
(``flock``) while it lives. When a process is killed (``kill -9``, a lost CI runner), the
lock goes with it; the next tfdeploy process that makes such a directory first removes every
one whose lock it can take. Directories without a lock come from older versions of tfdeploy
and are removed once they are a day old; ``tfdeploy-view-*`` folders (TensorBoard logs a user
may still be looking at) are never touched.

Files and folders written aside before being renamed into place (an archive, an exported
model) carry their process id in their name (:func:`aside_name`); :func:`sweep_aside` removes
those of dead processes before the next one writes to the same place.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: nothing is swept
    fcntl = None  # type: ignore[assignment]

PREFIX = "tfdeploy-"
LOCK = ".lock"
#: Kinds of directory swept when their owner is gone.
SWEPT = ("bundle", "tfserving")
#: Age after which a directory of a swept kind without a lock (older tfdeploy) is removed.
UNLOCKED_AGE = 24 * 3600

_held: dict[Path, IO[bytes]] = {}
_lock = threading.Lock()
_swept = False


def make(kind: str = "bundle") -> Path:
    """A new private directory ``<tmp>/tfdeploy-<kind>-*``, locked until :func:`remove`.

    The first call in a process also removes what dead processes left (:func:`sweep`).
    """
    global _swept
    if not _swept:
        _swept = True
        sweep()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    # Locked under another name first, then renamed: no sweeper ever sees an unlocked .lock.
    handle = (path / f"{LOCK}.new").open("wb")
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(path / f"{LOCK}.new", path / LOCK)
    with _lock:
        _held[path] = handle
    return path


def remove(path: Path) -> None:
    """Delete a directory made by :func:`make` and let go of its lock."""
    with _lock:
        handle = _held.pop(path, None)
    shutil.rmtree(path, ignore_errors=True)
    if handle is not None:
        handle.close()


@atexit.register
def _remove_all() -> None:
    for path in list(_held):
        remove(path)


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the directories of swept kinds whose process is gone; return them."""
    base = Path(root or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        kind = path.name[len(PREFIX) :].split("-", 1)[0]
        if kind not in SWEPT or path in _held or not path.is_dir() or path.is_symlink():
            continue
        if _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _abandoned(path: Path) -> bool:
    lock = path / LOCK
    if not lock.is_file():
        try:
            return time.time() - path.stat().st_mtime > UNLOCKED_AGE
        except OSError:
            return False
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its process still holds it
    finally:
        os.close(fd)
    return True


def aside_prefix(target: Path) -> str:
    """The name prefix of what this process writes aside before renaming it to ``target``."""
    return f".{target.name}.tmp-{os.getpid()}-"


def sweep_aside(target: Path) -> None:
    """Remove what dead processes wrote aside for ``target`` (see :func:`aside_prefix`)."""
    start = f".{target.name}.tmp-"
    try:
        siblings = [p for p in target.parent.iterdir() if p.name.startswith(start)]
    except OSError:
        return
    for path in siblings:
        pid = path.name[len(start) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
