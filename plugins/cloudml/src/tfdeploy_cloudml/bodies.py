"""Prediction requests as Vertex AI receives them: the contract's request split to fit.

Vertex AI refuses request bodies over 1.5 MB (1,572,864 bytes) as received. The SDK sends
``{"instances": [...]}`` through protobuf's JSON printer: indented by 2, ASCII only, every
number written as a double (``1`` -> ``1.0``), so a body is often several times its compact
size. :func:`sent_size` measures an instance exactly as it will be sent, and :func:`batches`
packs instances into requests that stay under the limit. Vertex AI serves the
``serving_default`` signature in row format; a columnar request (``inputs``) is turned into
rows and its answer back into columns, so answers match a local model's in structure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tfdeploy.plugin import DEFAULT_SIGNATURE, InvalidInputError, wire

#: Vertex AI's limit on an online prediction request body, in bytes.
BODY_LIMIT = 1_572_864

# ``{\n  "instances": [`` ... ``\n  ]\n}``: what surrounds the instances.
_OPEN = len('{\n  "instances": [')
_CLOSE = len("\n  ]\n}")
# Instances sit two levels deep: each line of one is indented by 4 more spaces.
_DEPTH_INDENT = 4


def as_sent(value: Any) -> Any:
    """``value`` with every number a float, as protobuf's ``Value`` carries it."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): as_sent(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_sent(v) for v in value]
    return value


def sent_size(instance: Any) -> int:
    """Bytes one instance takes inside a request body as the SDK sends it."""
    text = json.dumps(as_sent(instance), indent=2)
    return len(text) + _DEPTH_INDENT * (text.count("\n") + 1)


def body_size(instances: Sequence[Any]) -> int:
    """Bytes of the request body ``{"instances": instances}`` as the SDK sends it."""
    if not instances:
        return len(json.dumps({"instances": []}, indent=2))
    items = sum(1 + sent_size(i) for i in instances)  # "\n" before each
    return _OPEN + items + (len(instances) - 1) + _CLOSE  # "," between


def batches(instances: Sequence[Any], limit: int = BODY_LIMIT) -> Iterator[list[Any]]:
    """``instances`` in consecutive requests whose bodies stay within ``limit`` bytes.

    Every instance is measured before anything is yielded, so one that cannot fit in a
    request on its own is an error before any request is sent.
    """
    sizes = [1 + sent_size(i) for i in instances]
    for index, size in enumerate(sizes):
        if _OPEN + size + _CLOSE > limit:
            raise InvalidInputError(
                f"instances[{index}] takes {_OPEN + size + _CLOSE:,} bytes in a request as "
                f"the Vertex AI SDK sends it, over Vertex AI's limit of {limit:,} bytes",
                hint="send smaller instances (numbers are sent as JSON text, several bytes "
                "each), or use a batch prediction job for large inputs",
            )
    batch: list[Any] = []
    used = _OPEN + _CLOSE
    for instance, size in zip(instances, sizes, strict=True):
        extra = size + (1 if batch else 0)
        if batch and used + extra > limit:
            yield batch
            batch, used, extra = [], _OPEN + _CLOSE, size
        batch.append(instance)
        used += extra
    if batch:
        yield batch


def plain(value: Any) -> Any:
    """``value`` as plain JSON values: numpy arrays and scalars become lists and numbers,
    bytes ``{"b64": ...}``, as the contract writes them."""
    return json.loads(json.dumps(value, default=wire.json_default))


def rows_of(request: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """The request's instances, and whether it came in columnar format (``inputs``)."""
    signature = request.get("signature_name") or DEFAULT_SIGNATURE
    if signature != DEFAULT_SIGNATURE:
        raise InvalidInputError(
            f"Vertex AI serves the {DEFAULT_SIGNATURE!r} signature only, not {signature!r}",
            hint="leave signature_name out, or export the model with the signature you need "
            f"as {DEFAULT_SIGNATURE!r}",
        )
    if "instances" in request:
        instances = plain(request["instances"])
        if not isinstance(instances, list):
            raise InvalidInputError("instances must be a list (one entry per example)")
        wire.check_not_empty(instances)
        return instances, False
    if "inputs" in request:
        return _columns_to_rows(plain(request["inputs"])), True
    raise InvalidInputError(
        "the request has neither 'instances' nor 'inputs'",
        hint='send {"instances": [...]}',
    )


def _columns_to_rows(inputs: Any) -> list[Any]:
    if isinstance(inputs, list):
        wire.check_not_empty(inputs)
        return inputs
    if isinstance(inputs, Mapping) and not wire.is_b64(inputs) and inputs:
        lengths = {len(v) if isinstance(v, list) else -1 for v in inputs.values()}
        if len(lengths) == 1 and (n := lengths.pop()) > 0:
            return [{k: v[i] for k, v in inputs.items()} for i in range(n)]
    raise InvalidInputError(
        "Vertex AI takes instances; these columnar inputs have no common first dimension to "
        "split them on",
        hint='send {"instances": [...]} (one entry per example)',
    )


def answer(predictions: list[Any], columnar: bool) -> dict[str, Any]:
    """The contract answer: ``predictions``, or ``outputs`` for a columnar request."""
    if not columnar:
        return {"predictions": predictions}
    if predictions and all(isinstance(p, Mapping) and not wire.is_b64(p) for p in predictions):
        keys = list(predictions[0])
        return {"outputs": {k: [p.get(k) for p in predictions] for k in keys}}
    return {"outputs": predictions}
