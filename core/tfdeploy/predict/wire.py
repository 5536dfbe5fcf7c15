"""The wire format of the one prediction contract: TF Serving's JSON requests and answers.

Every way of predicting in tfdeploy (a loaded model, the local server, each deploy target)
turns a request into arrays and arrays into an answer with the functions here, so the same
model and instances give the same structure everywhere.

Requests are ``{"signature_name"?, "instances": [...]}`` (row format, one entry per example;
with several inputs each entry is an object keyed by input name) or
``{"signature_name"?, "inputs": ...}`` (columnar: a value for one input, or an object keyed by
input name). Binary values are ``{"b64": "..."}``. Answers are ``{"predictions": [...]}`` or
``{"outputs": ...}``: bare values for one output, objects keyed by output name for several.
Outputs whose name ends in ``_bytes`` come back as ``{"b64": ...}``; float32 outputs carry the
decimals TF Serving writes (:mod:`tfdeploy.predict.decimals`).

Inputs are fed as TF Serving feeds them (``json_tensor.cc``): each input's tensor is built from
the JSON as given (row format: the instances stacked on a new dimension 0), converted to the
signature's dtype by TF Serving's rules, and is not compared with the shape the signature
declares; the model accepts or refuses it, and :func:`explain_refusal` then names the input,
what it expects and what it got. The R package's route (``dialect="r"``) also ignores instance
keys the signature does not take, reshapes an instance to the declared shape when its values
fit it, and answers every output keyed by name.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:  # a faster JSON codec, installed with the serve extra; the standard library otherwise
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

from tfdeploy.errors import (
    InvalidInputError,
    InvalidModelError,
    PredictionError,
    SignatureNotFoundError,
    TfdeployError,
)
from tfdeploy.model.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    JSON_TYPES,
    PREDICT_METHOD,
    REGRESS_METHOD,
    Signature,
    TensorSpec,
)
from tfdeploy.predict.decimals import tf_serving_values

Format = Literal["row", "columnar"]
#: Whose rules a request follows: TF Serving's, or the R package's ``/<signature>/predict``.
Dialect = Literal["tf_serving", "r"]

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


def encode_answer(outputs: Mapping[str, np.ndarray], fmt: Format, *, keyed: bool = False) -> bytes:
    """``dumps(answer(outputs, fmt, keyed=keyed))``, faster for numeric outputs.

    When orjson is installed and every output is a finite numeric array, orjson writes the
    arrays directly (floats as the float64 values of TF Serving's decimals); anything else
    (strings, NaN, scalars) takes the standard path.
    """
    arrays = _fast_arrays(outputs) if _orjson is not None else None
    if arrays is not None and _orjson is not None:
        body: Any
        if fmt == "columnar":
            single = len(arrays) == 1 and not keyed
            body = {"outputs": next(iter(arrays.values())) if single else arrays}
        else:
            n = _row_count(outputs)
            if len(arrays) == 1 and not keyed:
                body = {"predictions": next(iter(arrays.values()))}
            else:
                body = {"predictions": [{k: a[i] for k, a in arrays.items()} for i in range(n)]}
        try:
            return bytes(_orjson.dumps(body, option=_orjson.OPT_SERIALIZE_NUMPY))
        except TypeError:
            pass
    return dumps(answer(outputs, fmt, keyed=keyed))


def _fast_arrays(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    arrays = {}
    for k, a in outputs.items():
        kind = a.dtype.kind
        if a.ndim == 0 or kind not in "biuf" or (kind == "f" and not np.isfinite(a).all()):
            return None
        arrays[k] = _json_floats(a) if kind == "f" else a
    return arrays or None


def _json_floats(a: np.ndarray) -> np.ndarray:
    """Float values as JSON carries them: float32 (and smaller) as TF Serving's decimals."""
    if a.dtype == np.float64:
        return a
    return tf_serving_values(a)


def dumps(obj: Any) -> bytes:
    """Encode an answer as compact JSON bytes, with non-finite floats as bare tokens."""
    return json.dumps(obj, default=json_default, separators=(",", ":")).encode()


# --- requests -----------------------------------------------------------------------------


def select_signature(signatures: Mapping[str, Signature], name: str | None) -> Signature:
    """Return the signature called ``name`` (``serving_default`` when ``None`` or empty)."""
    name = name or DEFAULT_SIGNATURE
    try:
        return signatures[name]
    except KeyError:
        available = ", ".join(sorted(signatures)) or "none"
        raise SignatureNotFoundError(
            f'Serving signature name: "{name}" not found in signature def '
            f"(the model has: {available})",
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
        kind = type(instances).__name__
        raise InvalidInputError(
            f"instances must be a list, a numpy array or a request object, not "
            f"{'an' if kind[:1] in 'aeiouAEIOU' else 'a'} {kind}",
            hint='pass a list of instances, or {"instances": [...]}',
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
    body: Any,
    signatures: Mapping[str, Signature],
    *,
    signature_name: str | None = None,
    dialect: Dialect = "tf_serving",
) -> PreparedRequest:
    """Check a request body's structure and build its input arrays, as TF Serving does.

    A ``signature_name`` in the body wins over the ``signature_name`` argument (which a server
    takes from the URL). The arrays have the signature's dtypes and the shapes the JSON gives;
    whether the model takes those shapes is the model's to say (:func:`explain_refusal`).
    """
    if not isinstance(body, Mapping):
        raise InvalidInputError(
            f"the request must be a JSON object, not {json_kind(body)} (JSON Value: Is not object)",
            hint='send {"instances": [...]} or {"inputs": ...}',
        )
    requested = body.get("signature_name", signature_name)
    if requested is not None and not isinstance(requested, str):
        raise InvalidInputError(
            "the request is not formatted correctly: 'signature_name' key must be a string value."
        )
    signature = select_signature(signatures, requested)
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows and has_columns:
        raise InvalidInputError(
            "the request must have exactly one of 'instances' (row format) or 'inputs' "
            "(columnar), not both (Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist)",
            hint='send {"instances": [...]} with one entry per example',
        )
    if not (has_rows or has_columns):
        raise InvalidInputError(
            "the request must have exactly one of 'instances' (row format) or 'inputs' "
            "(columnar): Missing 'inputs' or 'instances' key",
            hint='send {"instances": [...]} with one entry per example',
        )
    for spec in signature.inputs.values():
        if not spec.json_representable:
            raise InvalidModelError(
                f"input {spec.key!r} of signature {signature.name!r} has dtype {spec.dtype}, "
                "which cannot travel as JSON",
                hint="export a signature whose inputs are numbers, booleans or strings",
                code="UNIMPLEMENTED",
            )
    if not signature.inputs:
        raise InvalidModelError(f"Failed to get input map for signature: {signature.name}")
    try:  # Python callers' values never went through loads(): deep nesting fails here
        if has_rows:
            instances = body["instances"]
            inputs = rows_to_arrays(instances, signature, dialect=dialect)
            return PreparedRequest(signature, "row", inputs, len(instances))
        inputs = columns_to_arrays(body["inputs"], signature)
    except RecursionError as exc:
        raise _too_deep() from exc
    except InvalidInputError as exc:
        if exc.hint is not None:
            raise
        raise InvalidInputError(exc.message, hint=signature_hint(signature)) from exc
    return PreparedRequest(signature, "columnar", inputs, None)


def check_predict_method(signature: Signature) -> None:
    """TF Serving's ``Predict`` runs predict, classify and regress signatures, nothing else."""
    methods = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)
    if signature.method_name not in methods:
        raise TfdeployError(
            "Expected prediction signature method_name to be one of {"
            + ", ".join(methods)
            + f"}}. Was: {signature.method_name}",
            code="INTERNAL",
            hint="export the signature with method tensorflow/serving/predict",
        )


def signature_hint(signature: Signature) -> str:
    """What a signature takes, for an error's hint."""
    takes = ", ".join(f"{k} ({s.dtype} {s.shape_text()})" for k, s in signature.inputs.items())
    return f"signature {signature.name!r} takes inputs: {takes}"


def check_not_empty(instances: Any) -> None:
    """Raise the contract's error for an empty list of instances."""
    if isinstance(instances, np.ndarray):
        empty = instances.ndim == 0 or instances.shape[0] == 0
    else:
        empty = len(instances) == 0
    if empty:
        raise InvalidInputError(
            "'instances' is empty: No values in 'instances' array",
            hint="send at least one instance",
        )


def rows_to_arrays(
    instances: Any, signature: Signature, *, dialect: Dialect = "tf_serving"
) -> dict[str, np.ndarray]:
    """Convert row-format ``instances`` into one array per input: the instances stacked."""
    names = list(signature.inputs)
    if isinstance(instances, np.ndarray) and len(names) == 1:
        check_not_empty(instances)
        spec = signature.inputs[names[0]]
        return {spec.key: coerce(instances, spec, batched=True, where="instances")}
    if not isinstance(instances, (list, tuple)):
        raise InvalidInputError(
            f"'instances' must be a list with one entry per example, not {json_kind(instances)} "
            "(Excepting 'instances' to be an list/array)"
        )
    check_not_empty(instances)
    first = instances[0]
    named = isinstance(first, Mapping) and not is_b64(first)
    if not named:
        if len(names) > 1:
            raise InvalidInputError(
                f"signature {signature.name!r} has {len(names)} inputs ({', '.join(names)}), so "
                "each instance must be an object keyed by input name (instances is a plain list, "
                "but expecting list of objects as multiple input tensors required as per "
                "tensorinfo_map)",
                hint='send {"instances": [{' + ", ".join(f'"{n}": ...' for n in names) + "}]}",
            )
        for i, inst in enumerate(instances):
            if isinstance(inst, Mapping) and not is_b64(inst):
                raise InvalidInputError(
                    f"instances[{i}] is an object but instances[0] is not: Expecting value/list "
                    f"but got object at item {i} of input list"
                )
        spec = signature.inputs[names[0]]
        column = _fit_r_shape(instances, spec) if dialect == "r" else instances
        return {spec.key: coerce(column, spec, batched=True, where="instances")}
    columns: dict[str, list[Any]] = {n: [] for n in names}
    expected = set(names)
    for i, inst in enumerate(instances):
        if not isinstance(inst, Mapping) or is_b64(inst):
            raise InvalidInputError(
                f"instances[{i}] is {json_kind(inst)}; every instance must be an object keyed "
                f"by input name ({', '.join(names)}) (Expecting object but got list at item {i} "
                "of input list)"
            )
        if inst.keys() != expected:
            given = inst.keys() & expected if dialect == "r" else inst.keys()
            if given != expected:
                _check_names(given, signature, where=f"instances[{i}]")
        for n in names:
            columns[n].append(inst[n])
    arrays = {}
    for n in names:
        spec = signature.inputs[n]
        column = _fit_r_shape(columns[n], spec) if dialect == "r" else columns[n]
        arrays[n] = coerce(column, spec, batched=True, where=f"instances[*].{n}")
    return arrays


def _fit_r_shape(column: Sequence[Any], spec: TensorSpec) -> Sequence[Any]:
    """The R package's leniency: an instance whose values fit the declared per-instance shape
    (all dimensions known) is reshaped to it, e.g. ``[[100]]`` for a scalar input."""
    per = spec.instance_shape
    if per is None or any(d is None for d in per) or spec.dtype == "DT_STRING":
        return column
    size = math.prod(d for d in per if d is not None)
    dims = tuple(d for d in per if d is not None)
    try:
        whole = np.asarray(column)
        if whole.dtype != object and whole.shape[1:] == dims:
            return column  # every instance has the declared shape already
    except (ValueError, TypeError):
        pass
    out = []
    for value in column:
        if isinstance(value, (list, tuple)) or np.ndim(value) != len(dims):
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError):
                out.append(value)
                continue
            if arr.dtype != object and arr.size == size and arr.shape != dims:
                value = arr.reshape(dims).tolist()
        out.append(value)
    return out


def columns_to_arrays(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Convert columnar ``inputs`` into one array per input (keys the signature lacks are
    ignored, as TF Serving does)."""
    names = list(signature.inputs)
    if isinstance(inputs, Mapping) and not is_b64(inputs):
        missing = [n for n in names if n not in inputs]
        if missing:
            _check_names(inputs.keys() & set(names), signature, where="inputs")
        return {
            n: coerce(inputs[n], signature.inputs[n], batched=False, where=f"inputs.{n}")
            for n in names
        }
    if len(names) != 1:
        raise InvalidInputError(
            f"signature {signature.name!r} has {len(names)} inputs ({', '.join(names)}), so "
            "'inputs' must be an object keyed by input name (inputs is a plain value/list, but "
            "expecting an object as multiple input tensors required as per tensorinfo_map)"
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
            "unknown input"
            + ("s " if len(unknown) > 1 else " ")
            + ", ".join(map(repr, unknown))
            + f" (JSON object: does not have named input: {unknown[0]})"
        )
    if missing:
        parts.append(
            "missing input"
            + ("s " if len(missing) > 1 else " ")
            + ", ".join(map(repr, missing))
            + f" (Missing named input: {missing[0]})"
        )
    raise InvalidInputError(f"{where}: " + "; ".join(parts), hint=signature_hint(signature))


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
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'aeiouAEIOU' else 'a'} {kind}"


# --- coercion -----------------------------------------------------------------------------


def tf_type(dtype: str) -> str:
    """TensorFlow's short name of a dtype, as TF Serving's messages use it: ``float``."""
    return dtype.removeprefix("DT_").lower()


def numpy_dtype(spec: TensorSpec) -> np.dtype[Any]:
    """The numpy dtype an input's values are fed in (bfloat16 through TensorFlow's own type)."""
    if spec.dtype == "DT_BFLOAT16":
        try:
            import ml_dtypes

            bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
            return bfloat16
        except ImportError:  # pragma: no cover - installed with TensorFlow
            return np.dtype(np.float32)
    return np.dtype(spec.numpy_dtype)


def coerce(value: Any, spec: TensorSpec, *, batched: bool, where: str) -> np.ndarray:
    """Convert ``value`` into an array of ``spec``'s dtype, of the shape the JSON gives.

    ``batched`` says that ``value`` is a list of instances, so dimension 0 is the batch (it
    only changes how an error is worded). Errors name the input, what it expects, and what was
    given.
    """
    if spec.dtype == "DT_STRING":
        return _strings(value, spec, where, batched)
    return _numbers(value, spec, batched=batched, where=where)


def _expects(spec: TensorSpec, batched: bool) -> str:
    if batched:
        shape = spec.instance_shape
        return f"{spec.dtype} values of shape {spec.shape_text(shape)} per instance"
    return f"{spec.dtype} values of shape {spec.shape_text()}"


def _not_expected(spec: TensorSpec, where: str, got: str) -> InvalidInputError:
    kind = {"number": "numbers", "integer": "whole numbers", "boolean": "true/false values"}
    return InvalidInputError(
        f"{where}: input {spec.key!r} expects {spec.dtype} "
        f"{kind.get(JSON_TYPES.get(spec.dtype, ''), 'values')}; got {got}, which is not of "
        f"expected type: {tf_type(spec.dtype)}"
    )


def _numbers(value: Any, spec: TensorSpec, *, batched: bool, where: str) -> np.ndarray:
    target = numpy_dtype(spec)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        # numpy refuses ragged nesting: find the instance whose shape differs.
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects {_expects(spec, batched)}; "
            + _ragged_detail(value, batched),
        ) from exc
    except OverflowError as exc:
        raise _not_expected(spec, where, "a number too large to represent") from exc
    kind = arr.dtype.kind
    if kind == "O":
        raise _not_expected(spec, where, _odd_values(value))
    if kind in "USV" or (kind == "b" and target.kind != "b"):
        sample = arr.flat[0] if arr.size else arr
        got = "a string" if kind in "USV" else "a boolean"
        raise _not_expected(spec, where, f"{got} ({json.dumps(sample.item())})")
    if target.kind == "b":
        if kind != "b" and arr.size:
            raise _not_expected(spec, where, f"a number ({arr.flat[0].item()!r})")
        return arr.astype(bool, copy=False)
    if target.kind in "iu":
        if kind == "f":
            if not np.isfinite(arr).all():
                raise InvalidInputError(
                    f"{where}: input {spec.key!r} is {spec.dtype}; NaN and Infinity are not "
                    f"integers (not of expected type: {tf_type(spec.dtype)})"
                )
            if not (arr == np.floor(arr)).all():
                fraction = arr[arr != np.floor(arr)].flat[0]
                raise InvalidInputError(
                    f"{where}: input {spec.key!r} expects whole numbers ({spec.dtype}); got a "
                    f"fraction ({fraction!r}), which is not of expected type: "
                    f"{tf_type(spec.dtype)}"
                )
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            bad = arr[(arr < info.min) | (arr > info.max)].flat[0]
            raise InvalidInputError(
                f"{where}: input {spec.key!r} has a value out of range for {spec.dtype} "
                f"[{info.min}, {info.max}] ({bad!r}), which is not of expected type: "
                f"{tf_type(spec.dtype)}"
            )
        return arr.astype(target, copy=False)
    if kind in "iu" and arr.size:
        # JSON integers a float cannot hold exactly are refused, as TF Serving does.
        limit = 2 ** (np.finfo(target).nmant + 1) - 1
        big = np.abs(arr.astype(np.float64)) > limit
        if big.any():
            raise InvalidInputError(
                f"{where}: input {spec.key!r} expects {spec.dtype} numbers; cannot convert "
                f"JSON value {arr[big].flat[0]!r} to {tf_type(spec.dtype)} without loss of "
                "precision."
            )
    with np.errstate(over="ignore"):
        out = arr.astype(target, copy=False)
    if out.dtype != arr.dtype and out.size and not np.isfinite(out).all():
        overflow = np.isfinite(arr) & ~np.isfinite(out.astype(np.float64))
        if overflow.any():
            raise InvalidInputError(
                f"{where}: input {spec.key!r} has a value out of range for {spec.dtype} "
                f"({arr[overflow].flat[0]!r}): cannot convert it to {tf_type(spec.dtype)} "
                "without loss of precision."
            )
    return out


def _strings(value: Any, spec: TensorSpec, where: str, batched: bool) -> np.ndarray:
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
                    '{"b64": "<base64 text>"} (JSON Value not formatted correctly for base64 '
                    "data)"
                )
            try:
                return base64.b64decode(v["b64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidInputError(
                    f"{where}: input {spec.key!r} has invalid base64 (Unable to base64 decode)"
                ) from exc
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, np.ndarray):
            return [convert(x) for x in v.tolist()]
        raise InvalidInputError(
            f"{where}: input {spec.key!r} expects strings (DT_STRING); got {json_kind(v)}, "
            "which is not of expected type: string"
        )

    converted = convert(value)
    try:
        arr = np.array(converted, dtype=object)
    except ValueError as exc:
        raise InvalidInputError(
            f"{where}: input {spec.key!r} has ragged nesting; " + _ragged_detail(converted, batched)
        ) from exc
    if arr.dtype == object and arr.size and any(isinstance(x, list) for x in arr.flat):
        raise InvalidInputError(
            f"{where}: input {spec.key!r} has ragged nesting; " + _ragged_detail(converted, batched)
        )
    return arr


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
    if batched and isinstance(value, (list, tuple)) and value:
        shapes = [_shape_of(v) for v in value]
        for i, s in enumerate(shapes):
            if s is None:
                return (
                    f"instances[{i}] is ragged (its rows differ in length: Encountered list at "
                    "unexpected size)"
                )
        first = shapes[0] or ()
        for i, s in enumerate(shapes):
            if s != first:
                other = s or ()
                tf_text = (
                    f"Expecting shape {_tf_shape(first)} but got: {_tf_shape(other)}"
                    if math.prod(first) == math.prod(other)
                    else f"Expecting tensor size: {math.prod(first)} but got: {math.prod(other)}"
                )
                return (
                    f"instances[0] has shape {list(first)} but instances[{i}] has {list(other)} "
                    f"({tf_text})"
                )
    return (
        "the values are ragged (nested lists of different lengths: Encountered list at "
        "unexpected size)"
    )


def _tf_shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


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


# --- refusals -----------------------------------------------------------------------------


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e is None or e == a for e, a in zip(expected, shape, strict=True)
    )


def shape_mismatches(signature: Signature, inputs: Mapping[str, np.ndarray]) -> list[str]:
    """The inputs whose arrays do not have the shape the signature declares."""
    return [
        k
        for k, spec in signature.inputs.items()
        if k in inputs and spec.shape is not None and not _fits(inputs[k].shape, spec.shape)
    ]


def explain_refusal(request: PreparedRequest, error: TfdeployError) -> TfdeployError:
    """The error to answer when the model failed on ``request``.

    When an input's shape differs from the one the signature declares (TF Serving feeds it
    anyway, and so does tfdeploy), the model's refusal is most likely about that input: the
    answer names it, what it expects and what it got, with the model's own words. Other
    failures are the model's error as it is.
    """
    if not isinstance(error, PredictionError) or error.code != "INVALID_ARGUMENT":
        return error
    bad = shape_mismatches(request.signature, request.inputs)
    if not bad:
        return error
    batched = request.format == "row"
    parts = []
    for key in bad:
        spec = request.signature.inputs[key]
        shape = tuple(request.inputs[key].shape)
        if batched:
            where = "instances" if len(request.signature.inputs) == 1 else f"instances[*].{key}"
            per = list(shape[1:])
            got = f"the instances have shape {per}"
            if spec.shape is not None and len(shape) == len(spec.shape):
                got = f"instances[0] has shape {per}"
        else:
            where = "inputs" if len(request.signature.inputs) == 1 else f"inputs.{key}"
            got = f"got shape {list(shape)}"
        parts.append(f"{where}: input {key!r} expects {_expects(spec, batched)}; {got}")
    reason = error.message.removeprefix("the model failed on this input: ")
    return InvalidInputError(
        "; ".join(parts) + f" (the model refused it: {reason})",
        hint=signature_hint(request.signature),
    )


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


def follows_batch(outputs: Mapping[str, np.ndarray], n: int) -> bool:
    """Whether every output has the ``n`` instances of its call as its first dimension."""
    return all(v.ndim > 0 and v.shape[0] == n for v in outputs.values())


def run_in_batches(
    run: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    inputs: Mapping[str, np.ndarray],
    n: int,
    size: int,
) -> dict[str, np.ndarray]:
    """Call ``run`` on row-format ``inputs`` of ``n`` instances, at most ``size`` at a time.

    If the first chunk's outputs do not follow its instances (a model whose outputs are not
    per instance), the request runs whole instead, as TF Serving would run it.
    """
    if n <= size:
        return run(inputs)
    chunks = []
    for i, chunk in enumerate(iter_batches(inputs, n, size)):
        out = run(chunk)
        if i == 0 and not follows_batch(out, min(n, size)):
            return run(inputs)
        chunks.append(out)
    return concat_outputs(chunks)


def to_json_values(name: str, arr: np.ndarray) -> Any:
    """Convert one output array to JSON values.

    Strings decode as UTF-8; outputs whose name ends in ``_bytes`` become ``{"b64": ...}``;
    float32 values are TF Serving's decimals.
    """
    if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
        floats = arr if arr.dtype == np.float64 else arr.astype(np.float32)
        return _json_floats(floats).tolist()
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
    outputs: Mapping[str, np.ndarray], fmt: Format, *, keyed: bool = False
) -> dict[str, Any]:
    """Build the answer body for ``outputs`` in the request's format.

    With ``keyed`` (the R package's format) every output is keyed by its name, also when there
    is only one.
    """
    if not outputs:
        raise InvalidModelError("Cannot convert empty tensor map to JSON: the model gave no output")
    if fmt == "columnar":
        values = {k: to_json_values(k, v) for k, v in outputs.items()}
        if len(values) == 1 and not keyed:
            return {"outputs": next(iter(values.values()))}
        return {"outputs": values}
    return {"predictions": rows(outputs, keyed=keyed)}


def _row_count(outputs: Mapping[str, np.ndarray]) -> int:
    """The number of rows of a row-format answer: the first dimension all outputs share."""
    count: int | None = None
    for name, arr in outputs.items():
        if arr.ndim == 0:
            raise InvalidModelError(
                f"output {name!r} is a scalar, so it has no row per instance (Tensor name: "
                f"{name} has no shape information)",
                hint='ask in columnar format instead: {"inputs": ...}',
            )
        if count is not None and arr.shape[0] != count:
            raise InvalidModelError(
                f"the outputs do not share their first dimension (Tensor name: {name} has "
                f"inconsistent batch size: {arr.shape[0]} expecting: {count})",
                hint='ask in columnar format instead: {"inputs": ...}',
            )
        count = arr.shape[0]
    return count or 0


def rows(outputs: Mapping[str, np.ndarray], *, keyed: bool = False) -> list[Any]:
    """The row-format predictions: one bare value per instance, or one object per instance
    (always objects when ``keyed``)."""
    _row_count(outputs)
    values = {k: to_json_values(k, v) for k, v in outputs.items()}
    if len(values) == 1 and not keyed:
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
