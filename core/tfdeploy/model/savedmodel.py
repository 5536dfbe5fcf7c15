"""Finding and reading SavedModels on disk, without TensorFlow.

:func:`resolve_model_dir` turns whatever a user points at (the SavedModel directory, the
``saved_model.pb`` inside it, a TF-Serving base path of integer version folders, or a bundle
archive) into one SavedModel directory. :func:`read_model_info` reads its tags and signatures
from ``saved_model.pb`` and computes its size and content digest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from tfdeploy.errors import InvalidModelError, ModelNotFoundError
from tfdeploy.model import archive, workdir
from tfdeploy.model.manifest import manifest_of_unpacked
from tfdeploy.model.protowire import as_int64, as_message, as_text, fields
from tfdeploy.model.signatures import DTYPE_NAMES, MetaGraph, ModelInfo, Signature, TensorSpec

SAVED_MODEL_PB = "saved_model.pb"
#: TensorFlow's internal signature for the init op; not a serving signature.
INIT_OP_SIGNATURE = "__saved_model_init_op"


def is_savedmodel_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding ``saved_model.pb``."""
    return (path / SAVED_MODEL_PB).is_file()


def version_dirs(base: Path) -> dict[int, Path]:
    """The integer-named subdirectories of a model base path, by version.

    As in TF Serving, folders whose names are not integers are ignored.
    """
    found: dict[int, Path] = {}
    if not base.is_dir():
        return found
    for child in base.iterdir():
        if child.name.isdigit() and child.is_dir():
            found[int(child.name)] = child
    return found


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """Return the SavedModel directory that ``path`` designates.

    Accepts the directory itself, its ``saved_model.pb``, a base path of integer version
    folders (the highest version wins), or a ``.tar``/``.tar.gz`` bundle, which is unpacked
    safely into a temporary directory removed when the process exits.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(
            f"no such file or directory: {p}",
            hint="give the path of a SavedModel directory (the folder holding saved_model.pb)",
        )
    if p.is_file():
        if p.name == SAVED_MODEL_PB:
            return p.parent
        if archive.is_archive(p):
            target = workdir.make("bundle")  # removed when the process exits, or swept after
            archive.extract(p, target / "unpacked")
            model_dir = find_in_unpacked(target / "unpacked", source=p)
            manifest_of_unpacked(target / "unpacked", model_dir, source=p)
            return model_dir
        if p.suffix in (".keras", ".h5"):
            raise ModelNotFoundError(
                f"{p} is a Keras model file, not a SavedModel",
                hint=f"export it first: tfdeploy export {p} -o ./savedmodel",
            )
        raise ModelNotFoundError(
            f"{p} is a file, not a SavedModel",
            hint="give the SavedModel directory, its saved_model.pb, or a .tar.gz bundle",
        )
    if is_savedmodel_dir(p):
        return p
    versions = {v: d for v, d in version_dirs(p).items() if is_savedmodel_dir(d)}
    if versions:
        return versions[max(versions)]
    raise ModelNotFoundError(
        f"no SavedModel in {p}: it has neither saved_model.pb nor integer version folders",
        hint="point at the folder that holds saved_model.pb (export one with export_savedmodel)",
    )


def find_in_unpacked(root: Path, *, source: Path) -> Path:
    """The SavedModel in an unpacked archive: ``root`` itself, a base path of versions, or the
    one folder inside ``root`` that is either (a bundle's ``NAME/`` holding ``NAME/N/``)."""
    children = [c for c in root.iterdir() if c.is_dir()]
    for candidate in (root, *(children if len(children) == 1 else [])):
        try:
            return resolve_model_dir(candidate)
        except ModelNotFoundError:
            continue
    raise ModelNotFoundError(
        f"{source} holds no SavedModel",
        hint="package a model with tfdeploy package, or tar the folder that holds saved_model.pb",
    )


def model_files(model_dir: Path) -> list[Path]:
    """Every regular file under ``model_dir``, sorted by relative POSIX path."""
    files = [f for f in model_dir.rglob("*") if f.is_file()]
    return sorted(files, key=lambda f: f.relative_to(model_dir).as_posix())


def content_digest(model_dir: Path, files: Iterable[Path] | None = None) -> str:
    """A sha256 digest over the relative paths and contents of a SavedModel's files.

    Two directories with the same files hold the same digest, wherever they live and whatever
    their timestamps; the bundle manifest and every target record this value.
    """
    outer = hashlib.sha256()
    for f in files if files is not None else model_files(model_dir):
        inner = hashlib.sha256()
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f.relative_to(model_dir).as_posix().encode() + b"\0")
        outer.update(inner.digest())
    return "sha256:" + outer.hexdigest()


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read tags, signatures and TensorFlow version from a SavedModel, with size and digest."""
    model_dir = resolve_model_dir(path)
    pb = model_dir / SAVED_MODEL_PB
    try:
        data = pb.read_bytes()
    except OSError as exc:
        raise InvalidModelError(f"cannot read {pb}: {exc.strerror}") from exc
    meta_graphs = parse_saved_model(data, source=pb)
    files = model_files(model_dir)
    return ModelInfo(
        path=str(model_dir),
        meta_graphs=meta_graphs,
        size_bytes=sum(f.stat().st_size for f in files),
        digest=content_digest(model_dir, files),
        files=tuple(f.relative_to(model_dir).as_posix() for f in files),
    )


def parse_saved_model(data: bytes, *, source: Path | str = SAVED_MODEL_PB) -> tuple[MetaGraph, ...]:
    """Parse the bytes of ``saved_model.pb`` into its MetaGraphs."""
    try:
        metas = tuple(_meta_graph(as_message(v)) for n, _, v in fields(data) if n == 2)
    except (InvalidModelError, IndexError, ValueError) as exc:
        raise InvalidModelError(
            f"{source} is not a valid SavedModel ({exc})",
            hint="the file is corrupt or not a SavedModel; export the model again",
        ) from exc
    if not metas:
        raise InvalidModelError(
            f"{source} is not a valid SavedModel (it holds no MetaGraph)",
            hint="the file is corrupt or not a SavedModel; export the model again",
        )
    return metas


def _meta_graph(buf: memoryview) -> MetaGraph:
    tags: list[str] = []
    tf_version = ""
    signatures: dict[str, Signature] = {}
    for number, _, value in fields(buf):
        if number == 1:  # meta_info_def
            for n, _, v in fields(as_message(value)):
                if n == 4:
                    tags.append(as_text(v))
                elif n == 5:
                    tf_version = as_text(v)
        elif number == 5:  # map<string, SignatureDef> signature_def
            key, sig_buf = _map_entry(as_message(value))
            if key != INIT_OP_SIGNATURE:
                signatures[key] = _signature(key, sig_buf)
    return MetaGraph(tags=tuple(tags), signatures=signatures, tensorflow_version=tf_version)


def _map_entry(buf: memoryview) -> tuple[str, memoryview]:
    key, value = "", memoryview(b"")
    for number, _, v in fields(buf):
        if number == 1:
            key = as_text(v)
        elif number == 2:
            value = as_message(v)
    return key, value


def _signature(name: str, buf: memoryview) -> Signature:
    inputs: dict[str, TensorSpec] = {}
    outputs: dict[str, TensorSpec] = {}
    method = ""
    for number, _, value in fields(buf):
        if number in (1, 2):
            key, info = _map_entry(as_message(value))
            (inputs if number == 1 else outputs)[key] = _tensor_info(key, info)
        elif number == 3:
            method = as_text(value)
    return Signature(
        name=name,
        inputs=dict(sorted(inputs.items())),
        outputs=dict(sorted(outputs.items())),
        method_name=method,
    )


def _tensor_info(key: str, buf: memoryview) -> TensorSpec:
    tensor_name, dtype = "", 0
    shape: tuple[int | None, ...] | None = None
    for number, _, value in fields(buf):
        if number == 1:
            tensor_name = as_text(value)
        elif number == 2:
            dtype = as_int64(value)
        elif number == 3:
            shape = _shape(as_message(value))
    return TensorSpec(
        key=key,
        tensor_name=tensor_name,
        dtype=DTYPE_NAMES.get(dtype, f"DT_UNKNOWN_{dtype}"),
        shape=shape,
    )


def _shape(buf: memoryview) -> tuple[int | None, ...] | None:
    dims: list[int | None] = []
    for number, _, value in fields(buf):
        if number == 2:
            size = -1
            for n, _, v in fields(as_message(value)):
                if n == 1:
                    size = as_int64(v)
            dims.append(None if size < 0 else size)
        elif number == 3 and value:
            return None
    return tuple(dims)
