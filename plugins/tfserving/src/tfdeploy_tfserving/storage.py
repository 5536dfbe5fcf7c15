"""Model base paths on a local disk or in Google Cloud Storage.

A model's versions live in ``<base_path>/<model>/<int version>/``; the bundle's manifest
(with its digest) is written into each version as ``assets.extra/tfdeploy.json``, a folder
TensorFlow ignores, so the digest appears and disappears with the version itself.

A version must appear whole, because TF Serving polls the base path. Locally it is copied
into a hidden staging folder (``.tfdeploy-staging-*``; names that are not integers are
ignored by the server) and renamed into place in one step. GCS has no rename: files are
uploaded to a staging prefix, then copied server side into the version with ``saved_model.pb``
last, so the version is loadable the moment it has a ``saved_model.pb``. A version that lacks
one is the trace of an interrupted copy and is deleted by the next deploy.

Beside the versions, names the server ignores:

- ``.tfdeploy-staging-*``: a copy in progress; a dead process's is removed by the next run.
- ``.tfdeploy-retired-N-*``: version ``N`` was withdrawn (a failed deploy, or discarded by a
  rollback). Only the empty folder stays, so that the number is never used again.
- ``.tfdeploy-rolledback-N``: version ``N``, whole, set aside by a rollback so a later
  rollback can serve it again. It is kept while it is newer than every visible version (a
  roll forward is still possible), and withdrawn once a newer version is deployed.

:meth:`Store.tidy`, run by every deploy and rollback, applies these rules to what killed or
older runs left behind.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from tfdeploy.plugin import (
    SAVED_MODEL_PB,
    SAVED_MODEL_PBTXT,
    DependencyError,
    Manifest,
    Progress,
    TargetError,
    TfdeployError,
    from_connection_error,
    from_http_status,
    model_files,
)

MANIFEST_PATH = "assets.extra/tfdeploy.json"
STAGING = ".tfdeploy-staging-"
RETIRED = ".tfdeploy-retired-"
ASIDE = ".tfdeploy-rolledback-"


def _number(name: str) -> int | None:
    """The version number a folder name stands for: ``7``, ``.tfdeploy-retired-7-...``,
    ``.tfdeploy-rolledback-7``; ``None`` for anything else."""
    for prefix in (RETIRED, ASIDE, ""):
        if name.startswith(prefix):
            head = name[len(prefix) :].split("-")[0]
            return int(head) if head.isdigit() and (prefix or head == name) else None
    return None  # pragma: no cover


class Store(ABC):
    """One model's folder of versions, wherever it lives."""

    #: Where the model's versions live, as a user would write it.
    url: str

    @abstractmethod
    def versions(self) -> dict[int, Manifest | None]:
        """The visible versions and their manifests (``None`` when tfdeploy did not write one)."""

    @abstractmethod
    def highest_used(self) -> int:
        """The highest version number ever used here, retired versions included."""

    @abstractmethod
    def put(self, version: int, model_dir: Path, manifest: Manifest, progress: Progress) -> int:
        """Write ``model_dir`` as ``version`` so that it appears whole; return the bytes copied."""

    @abstractmethod
    def aside(self) -> dict[int, Manifest | None]:
        """The versions a rollback set aside (``.tfdeploy-rolledback-N``), with their manifests."""

    @abstractmethod
    def withdraw(self, version: int) -> None:
        """Hide ``version`` from the server at once, then delete its files; keep its number."""

    @abstractmethod
    def set_aside(self, version: int) -> None:
        """Hide ``version`` from the server, keeping it whole for :meth:`restore`."""

    @abstractmethod
    def restore(self, version: int) -> None:
        """Make a version :meth:`set_aside` put away visible again, whole."""

    @abstractmethod
    def tidy(self) -> None:
        """Remove what killed or older runs left: stale staging copies, files of withdrawn
        versions, and set-aside versions older than the newest visible one."""

    @abstractmethod
    def remove_all(self) -> None:
        """Delete the model's folder and everything in it."""

    @abstractmethod
    def read_text(self, location: str) -> str | None:
        """The text of a file beside the versions (``None`` if missing)."""

    @abstractmethod
    def write_text(self, location: str, text: str) -> None:
        """Replace a file's text in one step."""


def open_store(base_path: str, model_name: str, *, project: str | None = None) -> Store:
    """The store for ``model_name`` under ``base_path`` (a directory or ``gs://bucket/prefix``)."""
    if base_path.startswith("gs://"):
        return GCSStore(base_path, model_name, project=project)
    return LocalStore(Path(base_path).expanduser() / model_name)


#: The files whose presence makes a version loadable (TF Serving reads either).
MARKERS = (SAVED_MODEL_PB, SAVED_MODEL_PBTXT)


def files_to_copy(model_dir: Path) -> list[Path]:
    """The files of a SavedModel, ``saved_model.pb`` (or ``.pbtxt``) last, without an old
    tfdeploy manifest."""
    files = [f for f in model_files(model_dir) if f != model_dir / MANIFEST_PATH]
    return sorted(files, key=lambda f: f.parent == model_dir and f.name in MARKERS)


class LocalStore(Store):
    """Versions in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def versions(self) -> dict[int, Manifest | None]:
        """See :meth:`Store.versions`."""
        found: dict[int, Manifest | None] = {}
        if not self.root.is_dir():
            return found
        for child in self.root.iterdir():
            if child.name.isdigit() and child.is_dir():
                found[int(child.name)] = (
                    _manifest((child / MANIFEST_PATH).read_bytes())
                    if (child / MANIFEST_PATH).is_file()
                    else None
                )
        return found

    def aside(self) -> dict[int, Manifest | None]:
        """See :meth:`Store.aside`."""
        found: dict[int, Manifest | None] = {}
        if self.root.is_dir():
            for child in self.root.glob(f"{ASIDE}*"):
                number = _number(child.name)
                if number is not None and child.is_dir():
                    pb = child / MANIFEST_PATH
                    found[number] = _manifest(pb.read_bytes()) if pb.is_file() else None
        return found

    def highest_used(self) -> int:
        """See :meth:`Store.highest_used`."""
        used = [0]
        if self.root.is_dir():
            for child in self.root.iterdir():
                number = _number(child.name)
                if number is not None:
                    used.append(number)
        return max(used)

    def put(self, version: int, model_dir: Path, manifest: Manifest, progress: Progress) -> int:
        """See :meth:`Store.put`."""
        final = self.root / str(version)
        staging = self.root / f"{STAGING}{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        files = files_to_copy(model_dir)
        total = sum(f.stat().st_size for f in files)
        copied = 0
        try:
            staging.mkdir(parents=True)
            for f in files:
                dest = staging / f.relative_to(model_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
                copied += f.stat().st_size
                progress.advance(copied, total)
            (staging / MANIFEST_PATH).parent.mkdir(parents=True, exist_ok=True)
            (staging / MANIFEST_PATH).write_bytes(manifest.to_json())
            if final.exists():
                raise TargetError(
                    f"version {version} appeared in {self.root} while copying",
                    hint="another deploy is running; run again when it is done",
                )
            os.rename(staging, final)
        except OSError as exc:
            raise TargetError(f"cannot write version {version} into {self.root}: {exc}") from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return copied

    def _remove_stale_staging(self) -> None:
        if not self.root.is_dir():
            return
        for child in self.root.glob(f"{STAGING}*"):
            parts = child.name.removeprefix(STAGING).split("-")
            pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if not _alive(pid):
                shutil.rmtree(child, ignore_errors=True)

    def withdraw(self, version: int) -> None:
        """See :meth:`Store.withdraw`: renamed out of sight in one step, then emptied."""
        self._withdraw(self.root / str(version), version)

    def _withdraw(self, src: Path, version: int) -> None:
        if not src.is_dir():
            return
        hidden = self.root / f"{RETIRED}{version}-{int(time.time() * 1000)}"
        os.rename(src, hidden)
        _empty(hidden)

    def set_aside(self, version: int) -> None:
        """See :meth:`Store.set_aside`."""
        dest = self.root / f"{ASIDE}{version}"
        if dest.exists():
            self._withdraw(dest, version)
        os.rename(self.root / str(version), dest)

    def restore(self, version: int) -> None:
        """See :meth:`Store.restore`."""
        os.rename(self.root / f"{ASIDE}{version}", self.root / str(version))

    def tidy(self) -> None:
        """See :meth:`Store.tidy`."""
        if not self.root.is_dir():
            return
        self._remove_stale_staging()
        newest = max(self.versions(), default=0)
        for child in list(self.root.iterdir()):
            number = _number(child.name)
            if number is None or not child.is_dir():
                continue
            if child.name.startswith(RETIRED):
                _empty(child)  # older tfdeploy versions kept whole copies here
            elif child.name.startswith(ASIDE) and number < newest:
                self._withdraw(child, number)

    def remove_all(self) -> None:
        """See :meth:`Store.remove_all`."""
        shutil.rmtree(self.root, ignore_errors=True)

    def read_text(self, location: str) -> str | None:
        """See :meth:`Store.read_text`."""
        path = Path(location).expanduser()
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write_text(self, location: str, text: str) -> None:
        """See :meth:`Store.write_text`."""
        path = Path(location).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def _empty(folder: Path) -> None:
    """Delete what ``folder`` holds, keeping the folder."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _manifest(raw: bytes) -> Manifest | None:
    """A version's manifest, or ``None`` when it is not one tfdeploy wrote (or is damaged)."""
    try:
        return Manifest.from_json(raw)
    except TfdeployError:
        return None


class GCSStore(Store):
    """Versions under a ``gs://bucket/prefix``, through google-cloud-storage.

    Honours ``STORAGE_EMULATOR_HOST`` (then no credentials are used); otherwise the
    application default credentials.
    """

    def __init__(self, base_path: str, model_name: str, *, project: str | None = None) -> None:
        try:
            from google.api_core import exceptions as gexc
            from google.cloud import storage
        except ImportError as exc:
            raise DependencyError(
                "gs:// base paths need google-cloud-storage",
                hint="pip install 'tfdeploy-kit-tfserving[gcs]'",
            ) from exc
        self._errors = gexc
        bucket, _, prefix = base_path.removeprefix("gs://").partition("/")
        if not bucket:
            raise TargetError(f"{base_path!r} names no bucket", hint="write gs://BUCKET/PREFIX")
        self.prefix = "/".join(p for p in (prefix.strip("/"), model_name) if p) + "/"
        self.url = f"gs://{bucket}/{self.prefix.rstrip('/')}"
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(
                project=project or "tfdeploy",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
        else:
            client = storage.Client(project=project)
        self.bucket = client.bucket(bucket)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors.GoogleAPICallError as exc:
            raise from_http_status(exc.code or 500, f"{what} on {self.url}: {exc.message}") from exc
        except OSError as exc:  # connection refused, DNS, timeouts
            raise from_connection_error(self.url, exc) from exc

    def _list(self, prefix: str, *, delimiter: str | None = None) -> tuple[list[Any], set[str]]:
        def run() -> tuple[list[Any], set[str]]:
            it = self.bucket.client.list_blobs(self.bucket, prefix=prefix, delimiter=delimiter)
            blobs = list(it)
            return blobs, set(it.prefixes)

        result: tuple[list[Any], set[str]] = self._call("listing", run)
        return result

    def _children(self) -> set[str]:
        _, prefixes = self._list(self.prefix, delimiter="/")
        return {p[len(self.prefix) :].rstrip("/") for p in prefixes}

    def versions(self) -> dict[int, Manifest | None]:
        """See :meth:`Store.versions`."""
        found: dict[int, Manifest | None] = {}
        for name in self._children():
            if name.isdigit():
                blob = self.bucket.blob(f"{self.prefix}{name}/{MANIFEST_PATH}")
                raw = self._call("reading a manifest", _download_or_none, blob, self._errors)
                found[int(name)] = _manifest(raw) if raw is not None else None
        return found

    def aside(self) -> dict[int, Manifest | None]:
        """See :meth:`Store.aside`."""
        found: dict[int, Manifest | None] = {}
        for name in self._children():
            number = _number(name)
            if number is not None and name.startswith(ASIDE):
                blob = self.bucket.blob(f"{self.prefix}{name}/{MANIFEST_PATH}")
                raw = self._call("reading a manifest", _download_or_none, blob, self._errors)
                found[number] = _manifest(raw) if raw is not None else None
        return found

    def highest_used(self) -> int:
        """See :meth:`Store.highest_used`."""
        used = [0]
        for name in self._children():
            number = _number(name)
            if number is not None:
                used.append(number)
        return max(used)

    def _remove_partial(self) -> None:
        for name in self._children():
            if name.isdigit():
                markers = [self.bucket.blob(f"{self.prefix}{name}/{m}") for m in MARKERS]
                if not any(self._call("checking a version", pb.exists) for pb in markers):
                    self._delete_prefix(f"{self.prefix}{name}/")

    def _delete_prefix(self, prefix: str) -> None:
        blobs, _ = self._list(prefix)
        for blob in blobs:
            self._call("deleting", blob.delete)

    def put(self, version: int, model_dir: Path, manifest: Manifest, progress: Progress) -> int:
        """See :meth:`Store.put`."""
        staging = f"{self.prefix}{STAGING}{version}-{uuid.uuid4().hex[:8]}/"
        final = f"{self.prefix}{version}/"
        files = files_to_copy(model_dir)
        total = sum(f.stat().st_size for f in files)
        sent = 0
        names: list[str] = []
        try:
            for f in files:
                rel = f.relative_to(model_dir).as_posix()
                blob = self.bucket.blob(staging + rel)
                self._call("uploading", blob.upload_from_filename, str(f))
                names.append(rel)
                sent += f.stat().st_size
                progress.advance(sent, total)
            manifest_blob = self.bucket.blob(staging + MANIFEST_PATH)
            self._call("uploading", manifest_blob.upload_from_string, manifest.to_json())
            names.insert(0, MANIFEST_PATH)
            # saved_model.pb is last in `names`: the version becomes loadable only when whole.
            for rel in names:
                self._call(
                    "copying",
                    self.bucket.copy_blob,
                    self.bucket.blob(staging + rel),
                    self.bucket,
                    final + rel,
                )
        except BaseException:
            markers = [self.bucket.blob(final + m) for m in MARKERS]
            if not any(_quiet(pb.exists) for pb in markers):
                _quiet(self._delete_prefix, final)
            raise
        finally:
            _quiet(self._delete_prefix, staging)
        return sent

    def _move(self, src: str, dest: str, *, pb_first: bool) -> None:
        """Copy every object under ``src`` to ``dest``, then delete the originals.

        ``saved_model.pb`` is copied last (the destination becomes loadable only when whole)
        and, with ``pb_first``, deleted first (the source stops being loadable at once).
        """
        blobs, _ = self._list(src)
        last = [b for b in blobs if b.name[len(src) :] in MARKERS]
        for blob in [b for b in blobs if b not in last] + last:
            self._call(
                "copying", self.bucket.copy_blob, blob, self.bucket, dest + blob.name[len(src) :]
            )
        if pb_first:
            blobs = last + [b for b in blobs if b not in last]
        for blob in blobs:
            self._call("deleting", blob.delete)

    def withdraw(self, version: int) -> None:
        """See :meth:`Store.withdraw`: ``saved_model.pb`` goes first, then the rest, and an
        empty marker keeps the number."""
        self._withdraw(f"{self.prefix}{version}/", version)

    def _withdraw(self, src: str, version: int) -> None:
        blobs, _ = self._list(src)
        if not blobs:
            return
        blobs.sort(key=lambda b: b.name[len(src) :] not in MARKERS)
        for blob in blobs:
            self._call("deleting", blob.delete)
        marker = f"{self.prefix}{RETIRED}{version}-{int(time.time() * 1000)}/withdrawn"
        self._call("writing", self.bucket.blob(marker).upload_from_string, b"")

    def set_aside(self, version: int) -> None:
        """See :meth:`Store.set_aside`."""
        dest = f"{self.prefix}{ASIDE}{version}/"
        self._withdraw(dest, version)
        self._move(f"{self.prefix}{version}/", dest, pb_first=True)

    def restore(self, version: int) -> None:
        """See :meth:`Store.restore`."""
        self._move(f"{self.prefix}{ASIDE}{version}/", f"{self.prefix}{version}/", pb_first=False)

    def tidy(self) -> None:
        """See :meth:`Store.tidy`: also removes versions an interrupted copy left without a
        ``saved_model.pb``, and staging prefixes an hour old."""
        self._remove_partial()
        newest = max(self.versions(), default=0)
        for name in self._children():
            number = _number(name)
            if name.startswith(STAGING):
                blobs, _ = self._list(f"{self.prefix}{name}/")
                if all(_age(b) > 3600 for b in blobs):
                    self._delete_prefix(f"{self.prefix}{name}/")
            elif number is not None and name.startswith(RETIRED):
                blobs, _ = self._list(f"{self.prefix}{name}/")
                for blob in blobs:
                    if not blob.name.endswith("/withdrawn"):
                        self._call("deleting", blob.delete)
            elif number is not None and name.startswith(ASIDE) and number < newest:
                self._withdraw(f"{self.prefix}{name}/", number)

    def remove_all(self) -> None:
        """See :meth:`Store.remove_all`."""
        self._delete_prefix(self.prefix)

    def read_text(self, location: str) -> str | None:
        """See :meth:`Store.read_text` (``location`` is a ``gs://`` URL or a local path)."""
        if not location.startswith("gs://"):
            return LocalStore(Path(".")).read_text(location)
        blob = self._blob_for(location)
        raw = self._call("reading", _download_or_none, blob, self._errors)
        return raw.decode("utf-8") if raw is not None else None

    def write_text(self, location: str, text: str) -> None:
        """See :meth:`Store.write_text`; one object upload replaces the file whole."""
        if not location.startswith("gs://"):
            LocalStore(Path(".")).write_text(location, text)
            return
        self._call("writing", self._blob_for(location).upload_from_string, text.encode())

    def _blob_for(self, location: str) -> Any:
        bucket, _, name = location.removeprefix("gs://").partition("/")
        return self.bucket.client.bucket(bucket).blob(name)


def _age(blob: Any) -> float:
    """Seconds since ``blob`` was last written (0 when the service does not say)."""
    updated = getattr(blob, "updated", None)
    return time.time() - updated.timestamp() if updated is not None else 0.0


def _download_or_none(blob: Any, errors: Any) -> bytes | None:
    try:
        data: bytes = blob.download_as_bytes()
    except errors.NotFound:
        return None
    return data


def _quiet(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # cleaning up after a failure must not hide the failure
        return None
