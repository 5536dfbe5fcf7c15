"""Staging a SavedModel in Cloud Storage, where Vertex AI reads it from.

Each bundle goes under its own content-addressed prefix,
``gs://BUCKET[/PREFIX]/tfdeploy/<model>/<digest>/``, so a prefix never changes once complete
and a version's ``artifactUri`` always points at the files it was made from. Files already
there with the same size and MD5 are skipped: an interrupted staging resumes, and an unchanged
bundle uploads nothing. ``saved_model.pb`` goes last, so a prefix holding it is complete unless
someone removed files. Uploads report their bytes through ``Progress.advance``.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfdeploy.plugin import SAVED_MODEL_PB, ConfigError, Progress, RemoteError, model_files
from tfdeploy_cloudml.boundary import boundary

#: Files larger than this go up in chunks of this size, with progress after each.
CHUNK_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    """A ``gs://`` folder: bucket and object name prefix (no trailing slash)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> Location:
        """``gs://bucket/a/b`` -> Location("bucket", "a/b")."""
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        return cls(bucket, prefix.strip("/"))

    def child(self, *parts: str) -> Location:
        """A folder under this one."""
        return Location(self.bucket, "/".join(p for p in (self.prefix, *parts) if p))

    @property
    def uri(self) -> str:
        """``gs://bucket/prefix``."""
        return f"gs://{self.bucket}/{self.prefix}" if self.prefix else f"gs://{self.bucket}"


class _Counting(io.RawIOBase):
    """A file that reports how far it has been read (bytes handed to the uploader)."""

    def __init__(self, fh: Any, report: Any) -> None:
        self._fh = fh
        self._report = report

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._fh.seek(offset, whence))

    def tell(self) -> int:
        return int(self._fh.tell())

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._fh.read(size)
        self._report(self._fh.tell())
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def stage(client: Any, model_dir: Path, where: Location, progress: Progress) -> int:
    """Upload the SavedModel's files under ``where``, skipping those already there.

    Returns the number of bytes uploaded (0 when everything was there already).
    """
    files = model_files(model_dir)
    names = {f: where.child(f.relative_to(model_dir).as_posix()).prefix for f in files}
    try:
        with boundary(f"listing {where.uri}", "Cloud Storage"):
            bucket = client.bucket(where.bucket)
            present = {
                b.name: (b.size, b.md5_hash)
                for b in client.list_blobs(bucket, prefix=where.prefix + "/")
            }
    except RemoteError as exc:
        if exc.code == "NOT_FOUND":
            raise ConfigError(
                f"the staging bucket gs://{where.bucket} does not exist",
                hint=f"create it (gcloud storage buckets create gs://{where.bucket} "
                "--location=REGION) or set staging_bucket to one that exists",
            ) from exc
        raise
    todo = [
        f
        for f in files
        if names[f] not in present
        or present[names[f]][0] != f.stat().st_size
        or present[names[f]][1] != _md5(f)
    ]
    todo.sort(key=lambda f: f.name == SAVED_MODEL_PB)  # saved_model.pb last
    total = sum(f.stat().st_size for f in todo)
    if not todo:
        progress.step(f"{where.uri} holds the model already")
        return 0
    progress.step(f"staging {len(todo)} files ({total:,} bytes) in {where.uri}")
    done = 0
    progress.advance(0, total)
    for f in todo:
        size = f.stat().st_size
        base = done

        def report(position: int, base: int = base) -> None:
            progress.advance(min(base + position, total), total)

        blob = bucket.blob(names[f], chunk_size=CHUNK_SIZE if size > CHUNK_SIZE else None)
        with (
            boundary(f"uploading {f.name} to {where.uri}", "Cloud Storage"),
            f.open("rb") as fh,
        ):
            blob.upload_from_file(_Counting(fh, report), size=size, checksum="md5")
        done += size
        progress.advance(done, total)
    return done


def remove(client: Any, where: Location) -> int:
    """Delete every object under ``where``; returns how many there were."""
    with boundary(f"deleting {where.uri}", "Cloud Storage"):
        blobs = list(client.list_blobs(client.bucket(where.bucket), prefix=where.prefix + "/"))
        for blob in blobs:
            blob.delete()
    return len(blobs)
