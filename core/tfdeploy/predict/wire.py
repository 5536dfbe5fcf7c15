"""The wire format of the one prediction contract: TF Serving's JSON requests and answers.

Every way of predicting in tfdeploy (a loaded model, the local server, each deploy target)
turns a request into arrays and arrays into an answer with the functions here, so the same
model and instances give the same structure everywhere.

Requests are ``{"signature_name"?, "instances": [...]}`` (row format, one entry per example;
with several inputs each entry is an object keyed by input name) or
``{"signature_name"?, "inputs": ...}`` (columnar: a value for one input, or an object keyed by
input name). Binary values are ``{"b64": "..."}``. Answers are ``{"predictions": [...]}`` or
``{"outputs": ...}``: bare values for one output, objects keyed by output name for several.
Outputs whose name ends in ``_bytes`` come back as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:  # a faster JSON codec, installed with the serve extra; the standard library otherwise
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

from tfdeploy.errors import InvalidInputError, InvalidModelError, SignatureNotFoundError
from tfdeploy.model.signatures import DEFAULT_SIGNATURE, Signature, TensorSpec

Format = Literal["row", "columnar"]

#: Instances per model call when a request is split into batches.
DEFAULT_BATCH_SIZE = 512


@dataclass(frozen=True)
class PreparedRequest:
    """A request checked against its signature, its inputs as arrays of the signature's dtypes.

    ``batch_size`` is the number of instances for row-format requests (whose inputs all share
    dimension 0) and ``None`` for columnar ones.
    """

    signature: Signature
    format: Format
    inputs: dict[str, np.ndarray]
    batch_size: int | None

    def batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        """The inputs in batches of at most ``size`` instances (columnar requests: one batch)."""
        if self.batch_size is None:
            yield self.inputs
        else:
            yield from iter_batches(self.inputs, self.batch_size, size)


# --- JSON ---------------------------------------------------------------------------------


def loads(raw: bytes | str) -> Any:
    """Parse a JSON body; ``NaN``, ``Infinity`` and ``-Infinity`` are accepted as TF Serving does.

    With orjson installed (the ``serve`` extra) it parses first; what it refuses (non-finite
    tokens, lone surrogates, deep nesting, other encodings) goes to the standard parser, which
    accepts or explains. The one difference: integers beyond 64 bits arrive as floats.

    Values nested more than :data:`MAX_JSON_DEPTH` levels deep, and strings holding a lone
    UTF-16 surrogate (``"\\ud800"``, which is no Unicode text), are refused with
    :class:`InvalidInputError`, whatever parsed them.
    """
    if _orjson is not None:
        try:
            value = _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass
        else:
            _check_depth(raw)
            return value  # orjson refuses lone surrogates itself
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise _too_deep() from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError("the body is not UTF-8 text") from exc
    except ValueError as exc:
        raise InvalidInputError(
            f"malformed JSON: {exc}", hint='send a JSON object such as {"instances": [...]}'
        ) from exc
    _check_depth(raw)
    check_text(value)
    return value


#: Deepest nesting of arrays and objects a JSON body may have (a tensor of rank 64, the most
#: numpy holds, in a request needs fewer than 70 levels).
MAX_JSON_DEPTH = 100

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep() -> InvalidInputError:
    return InvalidInputError(
        f"the JSON body is nested too deeply (more than {MAX_JSON_DEPTH} levels)",
        hint="send each instance as a list of at most a few dimensions",
    )


def _check_depth(raw: bytes | str) -> None:
    """Refuse JSON text (already parsed, so well formed) nested deeper than MAX_JSON_DEPTH."""
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    elif json.detect_encoding(raw) in ("utf-8", "utf-8-sig"):
        data = bytes(raw)
    else:  # UTF-16 or UTF-32, which the standard parser accepts: count in UTF-8
        data = raw.decode(json.detect_encoding(raw), "surrogatepass").encode(
            "utf-8", "surrogatepass"
        )
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return
    # Brackets inside strings do not nest: drop the strings, keep the brackets, and count.
    brackets = np.frombuffer(_JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS), np.uint8)
    opening = (brackets == ord("[")) | (brackets == ord("{"))
    if int(np.cumsum(np.where(opening, 1, -1)).max()) > MAX_JSON_DEPTH:
        raise _too_deep()


def check_text(value: Any) -> None:
    """Refuse a parsed JSON value with a string (or key) holding a lone UTF-16 surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _not_unicode() from exc
    except RecursionError as exc:
        raise _too_deep() from exc


def _not_unicode() -> InvalidInputError:
    return InvalidInputError(
        "the request holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff), which is "
        "not Unicode text",
        hint='send text as valid UTF-8, or binary values as {"b64": "..."}',
    )


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy arrays and scalars, and bytes (as ``{"b64": ...}``)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_answer(
    outputs: Mapping[str, np.ndarray], fmt: Format, batch_size: int | None = None
) -> bytes:
    """``dumps(answer(outputs, fmt, batch_size))``, faster for numeric outputs.

    When orjson is installed and every output is a finite numeric array, orjson writes the
    arrays directly (as float64, so the digits are Python's ``repr`` of the same values);
    anything else (strings, NaN, scalars) takes the standard path.
    """
    arrays = _fast_arrays(outputs) if _orjson is not None else None
    if arrays is not None and _orjson is not None:
        body: Any
        if fmt == "columnar":
            body = {"outputs": next(iter(arrays.values())) if len(arrays) == 1 else arrays}
        elif all(a.shape[0] == batch_size for a in arrays.values()) or batch_size is None:
            n = next(iter(arrays.values())).shape[0]
            if len(arrays) == 1:
                body = {"predictions": next(iter(arrays.values()))}
            else:
                body = {"predictions": [{k: a[i] for k, a in arrays.items()} for i in range(n)]}
        else:
            body = None
        if body is not None:
            try:
                return bytes(_orjson.dumps(body, option=_orjson.OPT_SERIALIZE_NUMPY))
            except TypeError:
                pass
    return dumps(answer(outputs, fmt, batch_size))


def _fast_arrays(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    arrays = {}
    for k, a in outputs.items():
        kind = a.dtype.kind
        if a.ndim == 0 or kind not in "biuf" or (kind == "f" and not np.isfinite(a).all()):
            return None
        arrays[k] = np.ascontiguousarray(a, dtype=np.float64) if kind == "f" else a
    return arrays or None


def dumps(obj: Any) -> bytes:
    """Encode an answer as compact JSON bytes, with non-finite floats as bare tokens."""
    return json.dumps(obj, default=json_default, separators=(",", ":")).encode()


# --- requests -----------------------------------------------------------------------------


def select_signature(signatures: Mapping[str, Signature], name: str | None) -> Signature:
    """Return the signature called ``name`` (``serving_default`` when ``None``)."""
    name = name or DEFAULT_SIGNATURE
    try:
        return signatures[name]
    except KeyError:
        available = ", ".join(sorted(signatures)) or "none"
        raise SignatureNotFoundError(
            f"serving signature {name!r} not found (the model has: {available})",
            hint="pass one of the model's signature names as signature_name",
        ) from None


def as_request(instances: Any, signature_name: str | None = None) -> dict[str, Any]:
    """Turn what a Python caller passes into a request body.

    A mapping with ``instances`` or ``inputs`` is a request already; a list, tuple or array is
    a list of instances (for a numpy array, its first dimension).
    """
    if isinstance(instances, Mapping) and ("instances" in instances or "inputs" in instances):
        body = dict(instances)
    elif isinstance(instances, Mapping):
        raise InvalidInputError(
            "a request object needs an 'instances' or an 'inputs' key",
            hint='wrap the data: {"instances": [...]}, or pass a list of instances',
        )
    elif isinstance(instances, (list, tuple, np.ndarray)):
        body = {"instances": instances}
    else:
        raise InvalidInputError(
            f"instances must be a list, a numpy array or a request object, not {type(instances).__name__}"
        )
    if signature_name and "signature_name" not in body:
        body["signature_name"] = signature_name
    return body


def parse_instances_text(text: str, *, where: str = "input") -> Any:
    """Parse instances from text: a request object, a JSON list of instances, or JSON lines.

    JSON lines hold one instance per line, as ``gcloud ai-platform predict --json-instances``
    reads them. ``where`` names the source in error messages.
    """
    stripped = text.strip()
    if not stripped:
        raise InvalidInputError(f"{where} is empty", hint="give a JSON list of instances")
    try:
        return loads(stripped)
    except InvalidInputError as whole_error:
        lines = [line for line in stripped.splitlines() if line.strip()]
        if len(lines) < 2:
            raise InvalidInputError(f"{where}: {whole_error.message}") from whole_error
        instances = []
        for number, line in enumerate(lines, start=1):
            try:
                instances.append(loads(line))
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"{where} line {number}: {exc.message}",
                    hint="give one JSON object, one JSON list, or one JSON instance per line",
                ) from exc
        return instances


def prepare(
    body: Any, signatures: Mapping[str, Signature], *, signature_name: str | None = None
) -> PreparedRequest:
    """Check a request body against the model's signatures and convert its inputs.

    A ``signature_name`` in the body wins over the ``signature_name`` argument (which a server
    takes from the URL).
    """
    if not isinstance(body, Mapping):
        raise InvalidInputError(
            f"the request must be a JSON object, not {json_kind(body)}",
            hint='send {"instances": [...]} or {"inputs": ...}',
        )
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise InvalidInputError(
            "the request must have exactly one of 'instances' (row format) or 'inputs' (columnar)"
            + (", not both" if has_rows else ""),
            hint='send {"instances": [...]} with one entry per example',
        )
    requested = body.get("signature_name", signature_name)
    if requested is not None and not isinstance(requested, str):
        raise InvalidInputError("signature_name must be a string")
    signature = select_signature(signatures, requested)
    for spec in signature.inputs.values():
        if not spec.json_representable:
            raise InvalidModelError(
                f"input {spec.key!r} of signature {signature.name!r} has dtype {spec.dtype}, "
                "which cannot travel as JSON",
                hint="export a signature whose inputs are numbers, booleans or strings",
            )
    try:  # Python callers' values never went through loads(): deep nesting fails here
        if has_rows:
            inputs, n = rows_to_arrays(body["instances"], signature), len(body["instances"])
            return PreparedRequest(signature, "row", inputs, n)
        return PreparedRequest(
            signature, "columnar", columns_to_arrays(body["inputs"], signature), None
        )
    except RecursionError as exc:
        raise _too_deep() from exc


def check_not_empty(instances: Any) -> None:
    """Raise the contract's error for an empty list of instances."""
    if isinstance(instances, np.ndarray):
        empty = instances.ndim == 0 or instances.shape[0] == 0
    else:
        empty = len(instances) == 0
    if empty:
        raise InvalidInputError("'instances' is empty", hint="send at least one instance")


def rows_to_arrays(instances: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Convert row-format ``instances`` into one batched array per input."""
    if isinstance(instances, np.ndarray) and len(signature.inputs) == 1:
        check_not_empty(instances)
        (spec,) = signature.inputs.values()
        return {spec.key: coerce(instances, spec, batched=True, where="instances")}
    if not isinstance(instances, (list, tuple)):
        raise InvalidInputError(
            f"'instances' must be a list with one entry per example, not {json_kind(instances)}"
        )
    check_not_empty(instances)
    names = list(signature.inputs)
    first = instances[0]
    named = isinstance(first, Mapping) and not is_b64(first)
    if len(names) == 1 and not named:
        spec = signature.inputs[names[0]]
        return {spec.key: coerce(instances, spec, batched=True, where="instances")}
    if not named:
        raise InvalidInputError(
            f"signature {signature.name!r} has {len(names)} inputs ({', '.join(names)}), so each "
            "instance must be an object keyed by input name",
            hint='send {"instances": [{' + ", ".join(f'"{n}": ...' for n in names) + "}]}",
        )
    columns: dict[str, list[Any]] = {n: [] for n in names}
    expected = set(names)
    for i, inst in enumerate(instances):
        if not isinstance(inst, Mapping) or is_b64(inst):
            raise InvalidInputError(
                f"instances[{i}] is {json_kind(inst)}; every instance must be an object keyed "
                f"by input name ({', '.join(names)})"
            )
        if inst.keys() != expected:
            _check_names(inst.keys(), signature, where=f"instances[{i}]")
        for n in names:
            columns[n].append(inst[n])
    return {
        n: coerce(columns[n], signature.inputs[n], batched=True, where=f"instances[*].{n}")
        for n in names
    }


def columns_to_arrays(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Convert columnar ``inputs`` into one array per input."""
    names = list(signature.inputs)
    if isinstance(inputs, Mapping) and not is_b64(inputs):
        if inputs.keys() != set(names):
            _check_names(inputs.keys(), signature, where="inputs")
        return {
            n: coerce(inputs[n], signature.inputs[n], batched=False, where=f"inputs.{n}")
            for n in names
        }
    if len(names) != 1:
        raise InvalidInputError(
            f"signature {signature.name!r} has {len(names)} inputs ({', '.join(names)}), so "
            "'inputs' must be an object keyed by input name"
        )
    spec = signature.inputs[names[0]]
    return {spec.key: coerce(inputs, spec, batched=False, where="inputs")}


def _check_names(given: Any, signature: Signature, *, where: str) -> None:
    expected = list(signature.inputs)
    missing = [n for n in expected if n not in given]
    unknown = sorted(str(n) for n in given if n not in signature.inputs)
    parts = []
    if unknown:
        parts.append(
            "unknown input" + ("s " if len(unknown) > 1 else " ") + ", ".join(map(repr, unknown))
        )
    if missing:
        parts.append(
            "missing input" + ("s " if len(missing) > 1 else " ") + ", ".join(map(repr, missing))
        )
    raise InvalidInputError(
        f"{where}: " + "; ".join(parts),
        hint=f"signature {signature.name!r} takes inputs: "
        + ", ".join(
            f"{n} ({signature.inputs[n].dtype} {signature.inputs[n].shape_text()})"
            for n in expected
        ),
    )


def is_b64(value: Any) -> bool:
    """Whether ``value`` is a binary value in the contract's form, ``{"b64": "..."}``."""
    return isinstance(value, Mapping) and len(value) == 1 and "b64" in value


def json_kind(value: Any) -> str:
    """How to name ``value``'s JSON type in an error message: "a list", "an object", ..."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


# --- coercion -----------------------------------------------------------------------------


def coerce(value: Any, spec: TensorSpec, *, batched: bool, where: str) -> np.ndarray:
    """Convert ``value`` into an array of ``spec``'s dtype and check it against its shape.

    ``batched`` says that ``value`` is a list of instances, so dimension 0 is the batch.
    Errors name the input, what it expects, and what was given.
    """
    if spec.dtype == "DT_STRING":
        arr = _strings(value, spec, where)
    else:
        arr = _numbers(value, spec, batched=batched, where=where)
    _check_shape(arr, value, spec, batched=batched, where=where)
    return arr


def _expects(spec: TensorSpec, batched: bool) -> str:
    if batched:
        shape = spec.instance_shape
        return f"{spec.dtype} values of shape {spec.shape_text(shape)} per instance"
    return f"{spec.dtype} values of shape {spec.shape_text()}"


def _numbers(value: Any, spec: TensorSpec, *, batched: bool, where: str) -> np.ndarray:
    target = np.dtype(spec.numpy_dtype)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        # numpy refuses ragged nesting: find the instance whose shape differs.
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects {_expects(spec, batched)}; "
            + _ragged_detail(value, batched),
        ) from exc
    except OverflowError as exc:
        raise InvalidInputError(
            f"{where}: input {spec.key!r} got a number too large for {spec.dtype}"
        ) from exc
    kind = arr.dtype.kind
    if kind == "O":
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects {_expects(spec, batched)}; got "
            + _odd_values(value),
        )
    if kind in "USV" or (kind == "b" and target.kind != "b"):
        sample = arr.flat[0] if arr.size else arr
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects {spec.dtype} numbers; got "
            f"{'a string' if kind in 'USV' else 'a boolean'} ({sample.item()!r})",
        )
    if target.kind == "b":
        if kind != "b":
            raise InvalidInputError(
                f"{where}: input {spec.key!r} expects true/false values (DT_BOOL)"
            )
        return arr
    if target.kind in "iu":
        if kind == "f":
            if not np.isfinite(arr).all():
                raise InvalidInputError(
                    f"{where}: input {spec.key!r} is {spec.dtype}; NaN and Infinity are not integers"
                )
            if not (arr == np.floor(arr)).all():
                raise InvalidInputError(
                    f"{where}: input {spec.key!r} expects whole numbers ({spec.dtype}); "
                    f"got a fraction ({arr[arr != np.floor(arr)].flat[0]!r})"
                )
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidInputError(
                f"{where}: input {spec.key!r} has a value out of range for {spec.dtype} "
                f"[{info.min}, {info.max}]"
            )
        return arr.astype(target, copy=False)
    with np.errstate(over="ignore"):
        out = arr.astype(target, copy=False)
    if out.dtype != arr.dtype and out.size and not np.isfinite(out).all():
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            raise InvalidInputError(
                f"{where}: input {spec.key!r} has a value out of range for {spec.dtype} "
                f"({arr[overflow].flat[0]!r})"
            )
    return out


def _strings(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    def convert(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return v.encode()
            except UnicodeEncodeError as exc:
                raise _not_unicode() from exc
        if isinstance(v, bytes):
            return v
        if isinstance(v, Mapping):
            if not is_b64(v) or not isinstance(v["b64"], str):
                raise InvalidInputError(
                    f"{where}: input {spec.key!r} got an object; binary values are "
                    '{"b64": "<base64 text>"}'
                )
            try:
                return base64.b64decode(v["b64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidInputError(f"{where}: input {spec.key!r} has invalid base64") from exc
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, np.ndarray):
            return [convert(x) for x in v.tolist()]
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects strings (DT_STRING); got {json_kind(v)}"
        )

    converted = convert(value)
    try:
        arr = np.array(converted, dtype=object)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: input {spec.key!r} has ragged nesting") from exc
    if arr.dtype == object and arr.size and any(isinstance(x, list) for x in arr.flat):
        raise InvalidInputError(f"{where}: input {spec.key!r} has ragged nesting")
    return arr


def _check_shape(
    arr: np.ndarray, value: Any, spec: TensorSpec, *, batched: bool, where: str
) -> None:
    if spec.shape is None:
        return
    expected = spec.shape
    if batched and len(expected) == 0:
        raise InvalidInputError(
            f"{where}: input {spec.key!r} is a scalar with no batch dimension, so it cannot "
            "take a list of instances",
            hint='send it in columnar format: {"inputs": ...}',
        )
    actual = arr.shape
    if len(actual) == len(expected) and all(
        e is None or e == a for e, a in zip(expected, actual, strict=True)
    ):
        return
    if batched:
        per = spec.instance_shape
        assert per is not None
        bad = next(
            (i for i, inst in enumerate(arr) if not _fits(np.shape(inst), per)),
            None,
        )
        got = (
            f"instances[{bad}] has shape {list(np.shape(arr[bad]))}"
            if bad is not None
            else (f"the instances have shape {list(actual[1:])}")
        )
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects {_expects(spec, True)}; {got}"
        )
    raise InvalidInputError(
        f"{where}: input {spec.key!r} expects {_expects(spec, False)}; got shape {list(actual)}"
    )


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e is None or e == a for e, a in zip(expected, shape, strict=True)
    )


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of a nested list, or ``None`` when it is ragged."""
    if isinstance(value, (list, tuple)):
        if not value:
            return (0,)
        inner = [_shape_of(v) for v in value]
        if any(s is None for s in inner) or len(set(inner)) != 1:
            return None
        first = inner[0]
        assert first is not None
        return (len(value), *first)
    return ()


def _ragged_detail(value: Any, batched: bool) -> str:
    if batched and isinstance(value, (list, tuple)):
        shapes = [_shape_of(v) for v in value]
        for i, s in enumerate(shapes):
            if s is None:
                return f"instances[{i}] is ragged (its rows differ in length)"
        first = shapes[0]
        for i, s in enumerate(shapes):
            if s != first:
                return f"instances[0] has shape {list(first or ())} but instances[{i}] has {list(s or ())}"
    return "the values are ragged (nested lists of different lengths)"


def _odd_values(value: Any) -> str:
    def walk(v: Any) -> str | None:
        if isinstance(v, (list, tuple)):
            for x in v:
                if (found := walk(x)) is not None:
                    return found
            return None
        if isinstance(v, (bool, float)) or (isinstance(v, int) and abs(v) < 2**64):
            return None
        if isinstance(v, int):
            return "a number too large to represent"
        return json_kind(v)

    return walk(value) or "values of mixed types"


# --- answers ------------------------------------------------------------------------------


def iter_batches(
    inputs: Mapping[str, np.ndarray], n: int, size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Split batched ``inputs`` (all of first dimension ``n``) into chunks of ``size``."""
    if size <= 0:
        raise ValueError("batch size must be positive")
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in inputs.items()}


def concat_outputs(chunks: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join per-batch outputs back into one array per output."""
    if len(chunks) == 1:
        return dict(chunks[0])
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def to_json_values(name: str, arr: np.ndarray) -> Any:
    """Convert one output array to JSON values; strings decode, ``*_bytes`` outputs become b64."""
    if arr.dtype != object and arr.dtype.kind not in "SU":
        return arr.tolist()
    as_b64 = name.endswith("_bytes")

    def convert(v: Any) -> Any:
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, bytes):
            if as_b64:
                return {"b64": base64.b64encode(v).decode("ascii")}
            return v.decode("utf-8", errors="replace")
        return v

    return convert(arr.tolist())


def answer(
    outputs: Mapping[str, np.ndarray], fmt: Format, batch_size: int | None = None
) -> dict[str, Any]:
    """Build the answer body for ``outputs`` in the request's format."""
    if fmt == "columnar":
        values = {k: to_json_values(k, v) for k, v in outputs.items()}
        if len(values) == 1:
            return {"outputs": next(iter(values.values()))}
        return {"outputs": values}
    return {"predictions": rows(outputs, batch_size)}


def rows(outputs: Mapping[str, np.ndarray], batch_size: int | None = None) -> list[Any]:
    """The row-format predictions: one bare value per instance, or one object per instance."""
    for name, arr in outputs.items():
        if arr.ndim == 0 or (batch_size is not None and arr.shape[0] != batch_size):
            raise InvalidModelError(
                f"output {name!r} has shape {list(arr.shape)}, which does not have the batch "
                f"of {batch_size} instances as its first dimension",
                hint='ask in columnar format instead: {"inputs": ...}',
            )
    values = {k: to_json_values(k, v) for k, v in outputs.items()}
    if len(values) == 1:
        return list(next(iter(values.values())))
    names = list(values)
    columns = [values[k] for k in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def all_finite(value: Any) -> bool:
    """Whether every number in a JSON value is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return True
