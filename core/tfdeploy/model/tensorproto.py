"""``TensorProto`` and ``TensorShapeProto`` values as TF Serving's JSON shows them, without TensorFlow.

TF Serving prints protobuf messages with ``preserving_proto_field_names`` and every field that
has no presence included, so a signature's default input values (``SignatureDef.defaults``)
appear with all their value lists, empty ones too. The same JSON is made here from the binary
(:func:`from_wire`) or the text format (:func:`from_text`).
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from typing import Any

from tfdeploy.model.protowire import FIXED32, FIXED64, LENGTH, as_int64, as_message, fields
from tfdeploy.model.signatures import DTYPE_NAMES
from tfdeploy.model.textproto import Message

#: TensorProto's fields (tensorflow/core/framework/tensor.proto): number, name, kind.
TENSOR_FIELDS: tuple[tuple[int, str, str], ...] = (
    (1, "dtype", "dtype"),
    (2, "tensor_shape", "shape"),
    (3, "version_number", "int32"),
    (4, "tensor_content", "bytes"),
    (13, "half_val", "int32s"),
    (5, "float_val", "floats"),
    (6, "double_val", "doubles"),
    (7, "int_val", "int32s"),
    (8, "string_val", "bytes_list"),
    (9, "scomplex_val", "floats"),
    (10, "int64_val", "int64s"),
    (11, "bool_val", "bools"),
    (12, "dcomplex_val", "doubles"),
    (14, "resource_handle_val", "messages"),
    (15, "variant_val", "messages"),
    (16, "uint32_val", "uint32s"),
    (17, "uint64_val", "uint64s"),
    (18, "float8_val", "bytes"),
)
_BY_NUMBER = {number: (name, kind) for number, name, kind in TENSOR_FIELDS}
_BY_NAME = {name: kind for _, name, kind in TENSOR_FIELDS}


def _float32_text(value: float) -> float | str:
    """A float field's value as protobuf JSON prints it: the shortest digits that round-trip."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        shortest = float(f"{value:.{digits}g}")
        if struct.pack("<f", shortest) == packed:
            return shortest
    return value


def _double_json(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _varints(buf: memoryview) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        result = shift = 0
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out.append(result)
    return out


def shape_from_wire(buf: memoryview) -> dict[str, Any]:
    """A ``TensorShapeProto`` message as JSON."""
    dims, unknown = [], False
    for number, _, value in fields(buf):
        if number == 2:
            size, name = 0, ""
            for n, _, v in fields(as_message(value)):
                if n == 1:
                    size = as_int64(v)
                elif n == 2:
                    name = bytes(as_message(v)).decode("utf-8", "replace")
            dims.append({"size": str(size), "name": name})
        elif number == 3:
            unknown = bool(value)
    return {"dim": dims, "unknown_rank": unknown}


def shape_from_text(msg: Message) -> dict[str, Any]:
    """A text-format ``TensorShapeProto`` as JSON."""
    dims = [
        {"size": str(int(d.text("size", "0"), 0)), "name": d.text("name")}
        for d in msg.messages("dim")
    ]
    return {"dim": dims, "unknown_rank": msg.text("unknown_rank", "false") in ("true", "1")}


def from_wire(buf: memoryview) -> dict[str, Any]:
    """A binary ``TensorProto`` as TF Serving's JSON shows it."""
    values: dict[str, list[Any]] = {}
    scalars: dict[str, Any] = {}
    for number, wire, value in fields(buf):
        if number not in _BY_NUMBER:
            continue
        name, kind = _BY_NUMBER[number]
        if kind == "dtype":
            scalars[name] = DTYPE_NAMES.get(as_int64(value), f"DT_UNKNOWN_{as_int64(value)}")
        elif kind == "shape":
            scalars[name] = shape_from_wire(as_message(value))
        elif kind == "int32":
            scalars[name] = _signed(as_int64(value), 32)
        elif kind == "bytes":
            scalars[name] = base64.b64encode(bytes(as_message(value))).decode("ascii")
        elif kind == "bytes_list":
            values.setdefault(name, []).append(
                base64.b64encode(bytes(as_message(value))).decode("ascii")
            )
        elif kind == "messages":
            values.setdefault(name, []).append({})
        else:
            values.setdefault(name, []).extend(_numbers(kind, wire, value))
    return _render(scalars, values)


def _numbers(kind: str, wire: int, value: int | memoryview) -> list[Any]:
    if kind in ("floats", "doubles"):
        size, fmt = (4, "<f") if kind == "floats" else (8, "<d")
        if wire == LENGTH:
            raw = bytes(as_message(value))
            nums = [v for (v,) in struct.iter_unpack(fmt, raw[: len(raw) // size * size])]
        else:
            assert wire in (FIXED32, FIXED64) and isinstance(value, int)
            nums = list(struct.unpack(fmt, value.to_bytes(size, "little")))
        convert: Callable[[float], Any] = _float32_text if kind == "floats" else _double_json
        return [convert(v) for v in nums]
    ints = _varints(as_message(value)) if wire == LENGTH else [as_int64(value)]
    if kind == "int32s":
        return [_signed(v, 32) for v in ints]
    if kind == "uint32s":
        return [v & 0xFFFFFFFF for v in ints]
    if kind == "bools":
        return [bool(v) for v in ints]
    if kind == "int64s":
        return [str(_signed(v, 64)) for v in ints]
    return [str(v & 0xFFFFFFFFFFFFFFFF) for v in ints]  # uint64s


def from_text(msg: Message) -> dict[str, Any]:
    """A text-format ``TensorProto`` as TF Serving's JSON shows it."""
    scalars: dict[str, Any] = {}
    values: dict[str, list[Any]] = {}
    for name, items in msg.items():
        kind = _BY_NAME.get(name)
        if kind is None or not items:
            continue
        if kind == "dtype":
            token = msg.text(name)
            scalars[name] = (
                DTYPE_NAMES.get(int(token), token) if token.lstrip("-").isdigit() else token
            )
        elif kind == "shape":
            shape = msg.first(name)
            scalars[name] = shape_from_text(shape) if isinstance(shape, Message) else {}
        elif kind == "int32":
            scalars[name] = int(msg.text(name, "0"), 0)
        elif kind in ("bytes", "bytes_list"):
            encoded = [
                base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode("ascii")
                for v in items
                if not isinstance(v, Message)
            ]
            if kind == "bytes":
                scalars[name] = encoded[-1] if encoded else ""
            else:
                values[name] = encoded
        elif kind == "messages":
            values[name] = [{} for _ in items]
        else:
            values[name] = [_text_number(kind, str(v)) for v in items if isinstance(v, str)]
    return _render(scalars, values)


def _text_number(kind: str, token: str) -> Any:
    if kind in ("floats", "doubles"):
        lowered = token.lower().rstrip("f")
        number = float(lowered.replace("infinity", "inf"))
        return _float32_text(number) if kind == "floats" else _double_json(number)
    if kind == "bools":
        return token in ("true", "True", "t", "1")
    number = int(token, 0)
    return str(number) if kind in ("int64s", "uint64s") else number


def _render(scalars: dict[str, Any], values: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"dtype": scalars.get("dtype", "DT_INVALID")}
    if "tensor_shape" in scalars:
        out["tensor_shape"] = scalars["tensor_shape"]
    out["version_number"] = scalars.get("version_number", 0)
    out["tensor_content"] = scalars.get("tensor_content", "")
    for _, name, kind in TENSOR_FIELDS:
        if kind not in ("dtype", "shape", "int32", "bytes"):
            out[name] = values.get(name, [])
    out["float8_val"] = scalars.get("float8_val", "")
    return out
