"""Finding and reading SavedModels on disk, without TensorFlow.

:func:`resolve_model_dir` turns whatever a user points at (the SavedModel directory, the
``saved_model.pb`` inside it, a TF-Serving base path of integer version folders, or a bundle
archive) into one SavedModel directory. :func:`read_model_info` reads its tags and signatures
from ``saved_model.pb`` (or, as TensorFlow and TF Serving do when there is no binary file,
from ``saved_model.pbtxt``) and computes its size and content digest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from tfdeploy.errors import InvalidModelError, ModelNotFoundError
from tfdeploy.model import archive, tensorproto, textproto, workdir
from tfdeploy.model.manifest import manifest_of_unpacked
from tfdeploy.model.protowire import as_int64, as_message, as_text, fields
from tfdeploy.model.signatures import (
    DTYPE_NAMES,
    INIT_OP_SIGNATURE,
    MetaGraph,
    ModelInfo,
    Signature,
    TensorSpec,
)

SAVED_MODEL_PB = "saved_model.pb"
#: The text form of ``saved_model.pb``, read when there is no binary one.
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
#: Fields of a text-format SavedModel that hold no signature information, skipped unread.
_TEXT_SKIP = frozenset(
    {"graph_def", "saver_def", "collection_def", "object_graph_def", "asset_file_def"}
    | {"stripped_op_list", "function_aliases"}
)


def saved_model_file(path: Path) -> Path | None:
    """The file describing the SavedModel in directory ``path``: ``saved_model.pb``, else
    ``saved_model.pbtxt`` (the order TensorFlow's loader tries), or ``None``."""
    for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT):
        if (path / name).is_file():
            return path / name
    return None


def is_savedmodel_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding ``saved_model.pb`` or ``saved_model.pbtxt``."""
    return saved_model_file(path) is not None


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
        if p.name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT):
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
            hint="give the SavedModel directory, its saved_model.pb(txt), or a .tar.gz bundle",
        )
    if is_savedmodel_dir(p):
        return p
    versions = {v: d for v, d in version_dirs(p).items() if is_savedmodel_dir(d)}
    if versions:
        return versions[max(versions)]
    raise ModelNotFoundError(
        f"no SavedModel in {p}: it has neither saved_model.pb (or .pbtxt) nor integer version "
        "folders",
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
    pb = saved_model_file(model_dir) or model_dir / SAVED_MODEL_PB
    try:
        data = pb.read_bytes()
    except OSError as exc:
        raise InvalidModelError(
            f"cannot read {pb}: {exc.strerror}",
            hint="check the file's permissions, or copy the SavedModel again",
        ) from exc
    meta_graphs = parse_saved_model(data, source=pb, text=pb.name == SAVED_MODEL_PBTXT)
    files = model_files(model_dir)
    return ModelInfo(
        path=str(model_dir),
        meta_graphs=meta_graphs,
        size_bytes=sum(f.stat().st_size for f in files),
        digest=content_digest(model_dir, files),
        files=tuple(f.relative_to(model_dir).as_posix() for f in files),
    )


def parse_saved_model(
    data: bytes, *, source: Path | str = SAVED_MODEL_PB, text: bool = False
) -> tuple[MetaGraph, ...]:
    """Parse the bytes of ``saved_model.pb`` into its MetaGraphs; with ``text``, those of
    ``saved_model.pbtxt`` (whose graph is skipped unread)."""
    try:
        if text:
            root = textproto.parse(data.decode("utf-8"), skip=_TEXT_SKIP)
            metas = tuple(_text_meta_graph(m) for m in root.messages("meta_graphs"))
        else:
            metas = tuple(_meta_graph(as_message(v)) for n, _, v in fields(data) if n == 2)
    except (InvalidModelError, IndexError, ValueError, KeyError) as exc:
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
    defs: dict[str, Signature] = {}
    for number, _, value in fields(buf):
        if number == 1:  # meta_info_def
            for n, _, v in fields(as_message(value)):
                if n == 4:
                    tags.append(as_text(v))
                elif n == 5:
                    tf_version = as_text(v)
        elif number == 5:  # map<string, SignatureDef> signature_def
            key, sig_buf = _map_entry(as_message(value))
            defs[key] = _signature(key, sig_buf)
    return _make_meta_graph(tags, tf_version, defs)


def _make_meta_graph(tags: list[str], tf_version: str, defs: dict[str, Signature]) -> MetaGraph:
    defs = dict(sorted(defs.items()))
    return MetaGraph(
        tags=tuple(tags),
        signatures={k: s for k, s in defs.items() if k != INIT_OP_SIGNATURE},
        tensorflow_version=tf_version,
        signature_defs=defs,
    )


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
    defaults: dict[str, object] = {}
    method = ""
    for number, _, value in fields(buf):
        if number in (1, 2):
            key, info = _map_entry(as_message(value))
            (inputs if number == 1 else outputs)[key] = _tensor_info(key, info)
        elif number == 3:
            method = as_text(value)
        elif number == 4:  # map<string, TensorProto> defaults
            key, tensor = _map_entry(as_message(value))
            defaults[key] = tensorproto.from_wire(tensor)
    return Signature(
        name=name,
        inputs=dict(sorted(inputs.items())),
        outputs=dict(sorted(outputs.items())),
        method_name=method,
        defaults=defaults,
    )


def _tensor_info(key: str, buf: memoryview) -> TensorSpec:
    tensor_name, dtype = "", 0
    shape_json: dict[str, object] | None = None
    for number, _, value in fields(buf):
        if number == 1:
            tensor_name = as_text(value)
        elif number == 2:
            dtype = as_int64(value)
        elif number == 3:
            shape_json = tensorproto.shape_from_wire(as_message(value))
    return _spec(key, tensor_name, DTYPE_NAMES.get(dtype, f"DT_UNKNOWN_{dtype}"), shape_json)


def _spec(key: str, tensor_name: str, dtype: str, shape: dict[str, object] | None) -> TensorSpec:
    """A TensorSpec from a TensorInfo's name, dtype and the JSON of its shape."""
    if shape is None:
        return TensorSpec(key, tensor_name, dtype, None, has_shape=False)
    dims = shape["dim"]
    assert isinstance(dims, list)
    names = tuple(str(d["name"]) for d in dims)
    sizes = tuple(None if int(d["size"]) < 0 else int(d["size"]) for d in dims)
    return TensorSpec(
        key,
        tensor_name,
        dtype,
        None if shape["unknown_rank"] else sizes,
        dim_names=names if any(names) else (),
    )


def _text_meta_graph(meta: textproto.Message) -> MetaGraph:
    info = meta.messages("meta_info_def")
    tags = [
        v.decode("utf-8", "replace")
        for m in info
        for v in m.get("tags", [])
        if isinstance(v, bytes)
    ]
    tf_version = info[0].text("tensorflow_version") if info else ""
    defs: dict[str, Signature] = {}
    for entry in meta.messages("signature_def"):
        key = entry.text("key")
        value = entry.first("value")
        defs[key] = _text_signature(
            key, value if isinstance(value, textproto.Message) else textproto.Message()
        )
    return _make_meta_graph(tags, tf_version, defs)


def _text_signature(name: str, sig: textproto.Message) -> Signature:
    specs: dict[str, dict[str, TensorSpec]] = {"inputs": {}, "outputs": {}}
    for kind, found in specs.items():
        for entry in sig.messages(kind):
            key = entry.text("key")
            info = entry.first("value")
            if not isinstance(info, textproto.Message):
                info = textproto.Message()
            token = info.text("dtype", "DT_INVALID")
            dtype = DTYPE_NAMES.get(int(token), token) if token.lstrip("-").isdigit() else token
            shape = info.first("tensor_shape")
            found[key] = _spec(
                key,
                info.text("name"),
                dtype,
                tensorproto.shape_from_text(shape)
                if isinstance(shape, textproto.Message)
                else None,
            )
    defaults: dict[str, object] = {}
    for entry in sig.messages("defaults"):
        value = entry.first("value")
        if isinstance(value, textproto.Message):
            defaults[entry.text("key")] = tensorproto.from_text(value)
    return Signature(
        name=name,
        inputs=dict(sorted(specs["inputs"].items())),
        outputs=dict(sorted(specs["outputs"].items())),
        method_name=sig.text("method_name"),
        defaults=defaults,
    )
