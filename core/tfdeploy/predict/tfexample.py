"""Classify and regress requests: TF Serving's ``examples`` format and its answers.

``:classify`` and ``:regress`` take ``{"examples": [{feature: value}], "context"?: {...}}``;
the examples become serialized ``tf.Example`` protos, encoded by hand
(:mod:`tfdeploy.model.protowire`) so that no TensorFlow is needed, and the signature's
outputs become TF Serving's ``results``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfdeploy.errors import InvalidInputError, InvalidModelError
from tfdeploy.model.protowire import length_delimited, varint
from tfdeploy.predict.wire import check_text, is_b64, json_kind


def examples_to_protos(body: Any, *, max_bytes: int | None = None) -> list[bytes]:
    """Turn a ``:classify``/``:regress`` body into serialized ``tf.Example`` protos.

    ``{"examples": [{feature: value}], "context"?: {feature: value}}``: a value is a number,
    a string, ``{"b64": ...}`` or a list of one kind; whole numbers become an ``int64_list``,
    other numbers a ``float_list``, strings and b64 a ``bytes_list``. Context features are
    added to every example. Encoded by hand so that no TensorFlow is needed.

    With ``max_bytes``, examples that would take more than that in all (a large context
    repeated in many examples) are refused before they do.
    """
    if not isinstance(body, Mapping):
        raise InvalidInputError(f"the request must be a JSON object, not {json_kind(body)}")
    check_text(body)  # keys and values are encoded as UTF-8 below
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise InvalidInputError(
            "'examples' must be a non-empty list of objects keyed by feature name",
            hint='send {"examples": [{"feature": value, ...}]}',
        )
    context = body.get("context", {})
    if not isinstance(context, Mapping):
        raise InvalidInputError("'context' must be an object keyed by feature name")
    shared = {str(k): _feature(v, f"context.{k}") for k, v in context.items()}
    out = []
    total = 0
    for i, ex in enumerate(examples):
        if not isinstance(ex, Mapping):
            raise InvalidInputError(f"examples[{i}] is {json_kind(ex)}, not an object")
        features = {**shared, **{str(k): _feature(v, f"examples[{i}].{k}") for k, v in ex.items()}}
        entries = b"".join(
            length_delimited(1, length_delimited(1, k.encode()) + length_delimited(2, f))
            for k, f in sorted(features.items())
        )
        out.append(length_delimited(1, entries))
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


def _feature(value: Any, where: str) -> bytes:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, (str, bytes)) or is_b64(v) for v in values):
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
                    raise InvalidInputError(f"{where}: invalid base64") from exc
        return length_delimited(1, b"".join(length_delimited(1, b) for b in items))  # bytes_list
    if not all(isinstance(v, (int, float)) for v in values):
        raise InvalidInputError(
            f'{where}: a feature is a number, a string, {{"b64": ...}} or a list of one kind'
        )
    if all(isinstance(v, int) for v in values):
        if any(not -(2**63) <= v < 2**63 for v in values):
            raise InvalidInputError(f"{where}: a value is out of range for int64")
        return length_delimited(3, length_delimited(1, b"".join(varint(int(v)) for v in values)))
    try:
        packed = struct.pack(f"<{len(values)}f", *values)
    except (OverflowError, struct.error) as exc:
        raise InvalidInputError(f"{where}: a value is out of range for float") from exc
    return length_delimited(2, length_delimited(1, packed))  # float_list


def classify_results(outputs: Mapping[str, np.ndarray]) -> list[list[list[Any]]]:
    """TF Serving's ``:classify`` results: per example, a list of ``[label, score]`` pairs."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    ref = scores if scores is not None else classes
    if ref is None:
        raise InvalidModelError("a classify signature must output 'classes' or 'scores'")
    n = ref.shape[0]
    k = ref.reshape(n, -1).shape[1]
    labels = classes.reshape(n, -1) if classes is not None else None
    values = scores.reshape(n, -1) if scores is not None else None
    results = []
    for i in range(n):
        row = []
        for j in range(k):
            label = labels[i, j] if labels is not None else b""
            text = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            row.append([text, float(values[i, j]) if values is not None else 0.0])
        results.append(row)
    return results


def regress_results(outputs: Mapping[str, np.ndarray]) -> list[float]:
    """TF Serving's ``:regress`` results: one number per example."""
    arr = outputs.get("outputs")
    if arr is None:
        if len(outputs) != 1:
            raise InvalidModelError("a regress signature must output 'outputs'")
        (arr,) = outputs.values()
    return [float(v) for v in arr.reshape(arr.shape[0], -1)[:, 0]] if arr.ndim else [float(arr)]
