"""Classify and regress: TF Serving's ``examples`` requests, its signature rules and its results.

``:classify`` and ``:regress`` take ``{"examples": [{feature: value}], "context"?: {...}}``;
the examples become serialized ``tf.Example`` protos, encoded by hand
(:mod:`tfdeploy.model.protowire`) so that no TensorFlow is needed, and are fed to the
signature's ``inputs`` tensor. The checks on the signature and on its outputs, and their
messages, are those of TF Serving's ``classifier.cc`` and ``regressor.cc``; the gRPC
``Classify``, ``Regress`` and ``MultiInference`` calls share them.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from tfdeploy.errors import InvalidInputError, SignatureNotFoundError, TfdeployError
from tfdeploy.model.protowire import length_delimited, varint
from tfdeploy.model.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    DTYPE_FOR_NUMPY,
    REGRESS_METHOD,
    Signature,
)
from tfdeploy.predict.decimals import tf_serving_values
from tfdeploy.predict.wire import check_text, is_b64, json_kind

Method = Literal["classify", "regress"]
_METHODS = {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD}
_FLOAT_MAX = 3.4028234663852886e38
_SIGNED_64 = 2**63


def _kind_name(value: Any) -> str:
    """The JSON type name TF Serving's messages use: Null, True, Array, Object, ..."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return "Array"
    if isinstance(value, Mapping):
        return "Object"
    if isinstance(value, str):
        return "String"
    return "Number"


def examples_to_protos(
    body: Any, method: Method = "classify", *, max_bytes: int | None = None
) -> list[bytes]:
    """Turn a ``:classify``/``:regress`` body into serialized ``tf.Example`` protos.

    ``{"examples": [{feature: value}], "context"?: {feature: value}}``: a value is a number,
    a boolean (an int64 0 or 1), a string, ``{"b64": ...}`` or a list of one kind; JSON
    integers (and booleans) become an ``int64_list``, other numbers a ``float_list``, strings
    and b64 a ``bytes_list``; as in TF Serving, ``[10, 10.0]`` mixes two kinds and is refused.
    The context's serialization is put before each example's, as TF Serving does, so its
    features apply unless the example has its own.

    With ``max_bytes``, examples that would take more than that in all (a large context
    repeated in many examples) are refused before they do.
    """
    if not isinstance(body, Mapping):
        raise InvalidInputError(f"the request must be a JSON object, not {json_kind(body)}")
    check_text(body)  # keys and values are encoded as UTF-8 below
    if "signature_name" in body and not isinstance(body["signature_name"], str):
        raise InvalidInputError(
            "the request is not formatted correctly: 'signature_name' key must be a string value."
        )
    context = b""
    if "context" in body:
        context = _example(body["context"], "context")
    if "examples" not in body:
        raise InvalidInputError(
            f"When method is {method}, key 'examples' is expected and was not found",
            hint='send {"examples": [{"feature": value, ...}]}',
        )
    examples = body["examples"]
    if not isinstance(examples, list):
        raise InvalidInputError(
            f"Expecting 'examples' value to be an list/array, not {json_kind(examples)}",
            hint='send {"examples": [{"feature": value, ...}]}',
        )
    if not examples:
        raise InvalidInputError(
            "'examples' value is an empty array", hint="send at least one example"
        )
    out = []
    total = 0
    for i, ex in enumerate(examples):
        out.append(context + _example(ex, f"examples[{i}]"))
        total += len(out[-1])
        check_examples_size(total, max_bytes, len(examples))
    return out


def check_examples_size(total: int, max_bytes: int | None, count: int) -> None:
    """Refuse examples that, their context repeated in each, pass ``max_bytes``."""
    if max_bytes is not None and total > max_bytes:
        raise InvalidInputError(
            f"the {count} examples, with their context, take more than {max_bytes} bytes",
            hint="send fewer examples per request, or a smaller context",
        )


def _example(value: Any, where: str) -> bytes:
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{where}: Example must be JSON object but got JSON {_kind_name(value)}",
            hint='an example is an object of features, e.g. {"x": 1.5, "tags": ["a", "b"]}',
        )
    entries = b"".join(
        length_delimited(
            1,
            length_delimited(1, str(k).encode()) + length_delimited(2, _feature(v, str(k), where)),
        )
        for k, v in value.items()
    )
    return length_delimited(1, entries)


def _kind(value: Any, name: str, where: str) -> str:
    """A feature value's list kind, as TF Serving decides it: ``bytes`` for a string or b64,
    ``int64`` for a JSON integer or a boolean, ``float`` for any other number."""
    if isinstance(value, (str, bytes)) or is_b64(value):
        return "bytes"
    if isinstance(value, bool) or (isinstance(value, int) and not isinstance(value, bool)):
        return "int64"
    if isinstance(value, float):
        return "float"
    raise InvalidInputError(
        f"{where}: Feature: {name} has element with unexpected JSON type: {_kind_name(value)}",
        hint='a feature is a number, a string, {"b64": ...} or a list of one kind',
    )


def _feature(value: Any, name: str, where: str) -> bytes:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        return b""  # a feature with no values and no kind, as TF Serving makes it
    kind = _kind(values[0], name, where)
    for v in values[1:]:
        if _kind(v, name, where) != kind:
            raise InvalidInputError(
                f"{where}: Unexpected element type in feature: {name} expecting type: {kind}",
                hint="a feature's values are all strings, all whole numbers or all fractions "
                "(write 10.0 for a float)",
            )
    if kind == "bytes":
        items = []
        for v in values:
            if isinstance(v, str):
                items.append(v.encode())
            elif isinstance(v, bytes):
                items.append(v)
            else:
                try:
                    items.append(base64.b64decode(str(v["b64"]), validate=True))
                except (binascii.Error, ValueError) as exc:
                    raise InvalidInputError(
                        f"{where}: feature {name!r} has invalid base64 (Unable to base64 decode)"
                    ) from exc
        return length_delimited(1, b"".join(length_delimited(1, b) for b in items))  # bytes_list
    if kind == "int64":
        for v in values:
            if v >= _SIGNED_64:
                raise InvalidInputError(
                    f"{where}: Feature: {name} has uint64 element. Only int64 is supported."
                )
            if v < -_SIGNED_64:
                raise InvalidInputError(
                    f"{where}: Feature: {name} has a value out of range for int64"
                )
        return length_delimited(3, length_delimited(1, b"".join(varint(int(v)) for v in values)))
    for v in values:
        if math.isfinite(v) and abs(v) > _FLOAT_MAX:
            raise InvalidInputError(
                f"{where}: Cannot convert JSON value: {v} to float without loss of precision."
            )
    packed = struct.pack(f"<{len(values)}f", *(float(v) for v in values))
    return length_delimited(2, length_delimited(1, packed))  # float_list


# --- signatures ---------------------------------------------------------------------------


def examples_signature(
    signatures: Mapping[str, Signature], name: str | None, method: Method
) -> Signature:
    """The classify or regress signature a request names (``serving_default`` by default)."""
    name = name or DEFAULT_SIGNATURE
    sig = signatures.get(name)
    if sig is None:
        available = ", ".join(sorted(signatures)) or "none"
        raise SignatureNotFoundError(
            f"No signature was found with the name: {name} (the model has: {available})",
            hint="pass one of the model's signature names as signature_name",
        )
    check_method(sig, method)
    return sig


def check_method(sig: Signature, method: Method) -> None:
    """TF Serving's check that ``sig`` is a classify (or regress) signature."""
    want = _METHODS[method]
    label = "classification" if method == "classify" else "regression"
    if sig.method_name != want:
        raise InvalidInputError(
            f"Expected {label} signature method_name to be {want}. Was: {sig.method_name}",
            hint=f"name a signature whose method is {want}",
        )


def examples_input(sig: Signature, method: Method) -> str:
    """Check a classify/regress signature as TF Serving does; return its input's name."""
    check_method(sig, method)
    label = "classification" if method == "classify" else "regression"
    if len(sig.inputs) != 1:
        raise InvalidInputError("Expected one input Tensor.")
    if method == "classify" and len(sig.outputs) not in (1, 2):
        raise InvalidInputError(f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if method == "regress" and len(sig.outputs) != 1:
        raise InvalidInputError("Expected one output Tensor.")
    if "inputs" not in sig.inputs:
        raise TfdeployError(
            f"No {label} inputs found in SignatureDef {sig.name!r}: its input is not called 'inputs'",
            code="FAILED_PRECONDITION",
        )
    if method == "classify" and not {"classes", "scores"} & sig.outputs.keys():
        raise TfdeployError(
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature {sig.name!r} has: {", ".join(sig.outputs)}',
            code="FAILED_PRECONDITION",
        )
    if method == "regress" and "outputs" not in sig.outputs:
        raise TfdeployError(
            f"No regression outputs found in SignatureDef {sig.name!r}: its output is not called "
            "'outputs'",
            code="FAILED_PRECONDITION",
        )
    return "inputs"


def examples_outputs(method: Method, sig: Signature) -> list[str]:
    """The outputs a classify or regress call fetches."""
    if method == "regress":
        return ["outputs"]
    return [k for k in ("classes", "scores") if k in sig.outputs]


# --- results ------------------------------------------------------------------------------


def _shape_text(arr: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in arr.shape) + "]"


def classifications(outputs: Mapping[str, np.ndarray], n: int) -> list[list[tuple[str, float]]]:
    """Per example, its ``(label, score)`` pairs, checked as TF Serving's classifier checks them
    (a missing ``classes`` output gives empty labels, a missing ``scores`` zero scores)."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, arr, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if arr is None:
            continue
        if arr.ndim != 2:
            raise InvalidInputError(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(arr)}"
            )
        ok = arr.dtype == object if dtype == "DT_STRING" else arr.dtype == np.float32
        if not ok:
            got = DTYPE_FOR_NUMPY.get(arr.dtype.name, arr.dtype.name)
            raise InvalidInputError(f"Expected {name} Tensor of {dtype}. Got: {got}")
        if arr.shape[0] != n:
            raise InvalidInputError(
                f"Expected {name} output batch size of {n}. Got: {arr.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidInputError(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    ref = classes if classes is not None else scores
    k = ref.shape[1] if ref is not None else 0
    values = scores.tolist() if scores is not None else [[0.0] * k] * n
    labels = classes.tolist() if classes is not None else [[b""] * k] * n
    return [
        [
            (lab.decode("utf-8", "replace") if isinstance(lab, bytes) else str(lab), float(s))
            for lab, s in zip(labels[i], values[i], strict=True)
        ]
        for i in range(n)
    ]


def regressions(outputs: Mapping[str, np.ndarray], n: int) -> list[float]:
    """Per example, its value, checked as TF Serving's regressor checks them."""
    arr = outputs["outputs"]
    if not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)):
        raise InvalidInputError(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{_shape_text(arr)}"
        )
    if arr.shape[0] != n:
        raise InvalidInputError(
            f"Input batch size did not match output batch size: {n} vs. {arr.shape[0]}"
        )
    if arr.dtype != np.float32:
        got = DTYPE_FOR_NUMPY.get(arr.dtype.name, arr.dtype.name)
        raise InvalidInputError(f"Expected output Tensor of DT_FLOAT.  Got: {got}")
    return [float(v) for v in arr.reshape(n).tolist()]


def classify_json(results: list[list[tuple[str, float]]]) -> dict[str, Any]:
    """TF Serving's ``:classify`` answer: per example, ``[label, score]`` pairs."""
    if not results:
        raise InvalidInputError("Cannot convert empty ClassificationResults to JSON")
    flat = tf_serving_values(np.array([s for r in results for _, s in r], dtype=np.float32))
    scores = iter(flat.tolist())
    return {"results": [[[label, next(scores)] for label, _ in r] for r in results]}


def regress_json(values: list[float]) -> dict[str, Any]:
    """TF Serving's ``:regress`` answer: one number per example."""
    if not values:
        raise InvalidInputError("Cannot convert empty RegressionResults to JSON")
    return {"results": tf_serving_values(np.array(values, dtype=np.float32)).tolist()}
