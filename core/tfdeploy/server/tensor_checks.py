"""Checking a request's TensorProto against its own declared shape, before anything is decoded.

A ``TensorProto`` declares a shape and carries values either as raw ``tensor_content`` or in
the repeated field of its dtype (``float_val``, ``int64_val``...). TensorFlow accepts exactly
as many values as the shape holds or, in a typed field, one value repeated to fill it. A
36-byte message declaring a shape of ``[1000000, 64]`` with one value would still make a
256 MB array, so the size a tensor decodes to is checked against the server's request limit
too. Every check here reads only the message, never allocates the array.
"""

from __future__ import annotations

import math
from typing import Any

from tfdeploy.errors import InvalidInputError
from tfdeploy.model.signatures import DTYPE_NAMES

#: Most dimensions a request tensor may have (numpy's own limit).
MAX_RANK = 64

#: dtype -> (the repeated field that holds its values, values per element, bytes per element).
_FIELDS: dict[str, tuple[str, int, int]] = {
    "DT_FLOAT": ("float_val", 1, 4),
    "DT_DOUBLE": ("double_val", 1, 8),
    "DT_INT32": ("int_val", 1, 4),
    "DT_UINT8": ("int_val", 1, 1),
    "DT_INT16": ("int_val", 1, 2),
    "DT_INT8": ("int_val", 1, 1),
    "DT_UINT16": ("int_val", 1, 2),
    "DT_QINT8": ("int_val", 1, 1),
    "DT_QUINT8": ("int_val", 1, 1),
    "DT_QINT16": ("int_val", 1, 2),
    "DT_QUINT16": ("int_val", 1, 2),
    "DT_QINT32": ("int_val", 1, 4),
    "DT_STRING": ("string_val", 1, 8),  # one object pointer per element once decoded
    "DT_COMPLEX64": ("scomplex_val", 2, 8),
    "DT_COMPLEX128": ("dcomplex_val", 2, 16),
    "DT_INT64": ("int64_val", 1, 8),
    "DT_BOOL": ("bool_val", 1, 1),
    "DT_HALF": ("half_val", 1, 2),
    "DT_BFLOAT16": ("half_val", 1, 2),
    "DT_UINT32": ("uint32_val", 1, 4),
    "DT_UINT64": ("uint64_val", 1, 8),
}
_VALUE_FIELDS = sorted({f for f, _, _ in _FIELDS.values()})


def decoded_bytes(proto: Any, key: str) -> int:
    """Check that ``proto``'s values fit its declared shape; return the bytes it decodes to.

    Raises :class:`InvalidInputError` (INVALID_ARGUMENT) for a shape that is unknown,
    negative or of too many dimensions, for a value count that is neither the shape's
    element count nor (in a typed field) a single value to repeat, for ``tensor_content``
    whose length is not the shape's, and for values in a field of another dtype.
    """
    dtype = DTYPE_NAMES.get(proto.dtype, f"DT_UNKNOWN_{proto.dtype}")
    layout = _FIELDS.get(dtype)
    if layout is None:
        raise InvalidInputError(f"input {key!r} has dtype {dtype}, which a request cannot carry")
    field, per_element, item_bytes = layout
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise InvalidInputError(f"input {key!r} has no shape; a request tensor declares its shape")
    dims = [d.size for d in shape.dim]
    if len(dims) > MAX_RANK:
        raise InvalidInputError(
            f"input {key!r} declares {len(dims)} dimensions; at most {MAX_RANK} are accepted"
        )
    if any(d < 0 for d in dims):
        raise InvalidInputError(f"input {key!r} declares a negative dimension: {dims}")
    count: int = math.prod(dims)
    others = [f for f in _VALUE_FIELDS if f != field and len(getattr(proto, f))]
    if others:
        raise InvalidInputError(
            f"input {key!r} is {dtype} but carries values in {', '.join(others)}",
            hint=f"put {dtype} values in {field} or tensor_content",
        )
    content = len(proto.tensor_content)
    values = len(getattr(proto, field))
    if content:
        if dtype == "DT_STRING":
            raise InvalidInputError(f"input {key!r}: a DT_STRING tensor has no tensor_content")
        if values:
            raise InvalidInputError(f"input {key!r} carries both tensor_content and {field}")
        if content != count * item_bytes:
            raise InvalidInputError(
                f"input {key!r} declares shape {dims} ({count} values, {count * item_bytes} "
                f"bytes) but its tensor_content holds {content} bytes"
            )
    elif values != count * per_element and not (count and values == per_element):
        raise InvalidInputError(
            f"input {key!r} declares shape {dims} ({count} values) but {field} holds "
            f"{values // per_element}",
            hint="send one value per element of the shape (or a single value to repeat)",
        )
    return count * item_bytes


def check_request_size(total: int, limit: int) -> None:
    """Refuse a request whose tensors decode to more than ``limit`` bytes (INVALID_ARGUMENT:
    sending it again cannot help)."""
    if total > limit:
        raise InvalidInputError(
            f"the request's tensors decode to {total} bytes, more than this server accepts "
            f"({limit} bytes)",
            hint="send fewer instances per request, or start the server with a larger "
            "--max-body-bytes",
        )
