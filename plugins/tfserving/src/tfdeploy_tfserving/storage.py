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
"""

from __future__ import annotations

import json
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
    from_connection_error,
    from_http_status,
    model_files,
)

MANIFEST_PATH = "assets.extra/tfdeploy.json"
STAGING = ".tfdeploy-staging-"
RETIRED = ".tfdeploy-retired-"


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
    def retire(self, version: int) -> None:
        """Hide ``version`` from the server, keeping its files aside."""

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

    def highest_used(self) -> int:
        """See :meth:`Store.highest_used`."""
        used = [0]
        if self.root.is_dir():
            for child in self.root.iterdir():
                name = child.name.removeprefix(RETIRED).split("-")[0]
                if name.isdigit():
                    used.append(int(name))
        return max(used)

    def put(self, version: int, model_dir: Path, manifest: Manifest, progress: Progress) -> int:
        """See :meth:`Store.put`."""
        self._remove_stale_staging()
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

    def retire(self, version: int) -> None:
        """See :meth:`Store.retire`."""
        src = self.root / str(version)
        if src.is_dir():
            os.rename(src, self.root / f"{RETIRED}{version}-{int(time.time() * 1000)}")

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
    try:
        return Manifest.from_dict(json.loads(raw))
    except (ValueError, TypeError, Exception):
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

    def highest_used(self) -> int:
        """See :meth:`Store.highest_used`."""
        used = [0]
        for name in self._children():
            head = name.removeprefix(RETIRED).split("-")[0]
            if head.isdigit():
                used.append(int(head))
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
        self._remove_partial()
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

    def retire(self, version: int) -> None:
        """See :meth:`Store.retire`: the version's objects move to a retired prefix."""
        src = f"{self.prefix}{version}/"
        dest = f"{self.prefix}{RETIRED}{version}-{int(time.time() * 1000)}/"
        blobs, _ = self._list(src)
        # saved_model.pb(txt) goes first, so the version stops being loadable at once.
        blobs.sort(key=lambda b: b.name[len(src) :] not in MARKERS)
        for blob in blobs:
            self._call(
                "copying", self.bucket.copy_blob, blob, self.bucket, dest + blob.name[len(src) :]
            )
            self._call("deleting", blob.delete)

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
