"""The protobuf wire format, by hand: a reader for ``saved_model.pb`` and a small writer.

Reading signatures this way keeps TensorFlow (whose generated protobuf modules import all of
TensorFlow) out of ``inspect``, ``package`` and every command that loads no model. Fields are
walked, not copied: the large ``graph_def`` is skipped by its length prefix. The writer
(:func:`varint`, :func:`length_delimited`) encodes the few messages tfdeploy builds without
TensorFlow, such as ``tf.Example``.
"""

from __future__ import annotations

from collections.abc import Iterator

from tfdeploy.errors import InvalidModelError

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise InvalidModelError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise InvalidModelError("malformed protobuf varint")


def fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values are memoryviews."""
    view = memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise InvalidModelError("malformed protobuf field number 0")
        value: int | memoryview
        if wire == VARINT:
            value, pos = _varint(view, pos)
        elif wire == FIXED64:
            value, pos = int.from_bytes(view[pos : pos + 8], "little"), pos + 8
        elif wire == FIXED32:
            value, pos = int.from_bytes(view[pos : pos + 4], "little"), pos + 4
        elif wire == LENGTH:
            size, pos = _varint(view, pos)
            if pos + size > end:
                raise InvalidModelError("truncated protobuf message")
            value, pos = view[pos : pos + size], pos + size
        else:
            raise InvalidModelError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise InvalidModelError("truncated protobuf message")
        yield number, wire, value


def as_text(value: int | memoryview) -> str:
    """Decode a length-delimited string field."""
    if isinstance(value, int):
        raise InvalidModelError("expected a string field, found a number")
    return bytes(value).decode("utf-8", errors="replace")


def as_message(value: int | memoryview) -> memoryview:
    """Return a length-delimited sub-message."""
    if isinstance(value, int):
        raise InvalidModelError("expected a message field, found a number")
    return value


def as_int64(value: int | memoryview) -> int:
    """Interpret a varint as a signed 64-bit integer (two's complement)."""
    if not isinstance(value, int):
        raise InvalidModelError("expected a number field, found bytes")
    return value - (1 << 64) if value >= 1 << 63 else value


def varint(n: int) -> bytes:
    """Encode ``n`` as a varint; negative int64 values travel as their two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Encode field ``number`` holding ``payload`` (a string, bytes or a sub-message)."""
    return varint(number << 3 | LENGTH) + varint(len(payload)) + payload
