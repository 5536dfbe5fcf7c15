"""The protobuf text format, read by hand: enough to read ``saved_model.pbtxt`` without TensorFlow.

TensorFlow writes a SavedModel as text when asked (``builder.save(as_text=True)``, as the R
package did for its example models); TensorFlow's loader and TF Serving read it like
``saved_model.pb``. The generated protobuf classes that could parse it import all of
TensorFlow, so this small reader turns the text into plain messages instead: a
:class:`Message` maps each field name to the list of its values, a value being the token text
of a scalar (a number, an enum name, ``true``), decoded ``bytes`` for a quoted string, or a
nested :class:`Message`. Fields named in ``skip`` (the large ``graph_def``) are passed over
without building anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Union

from tfdeploy.errors import InvalidModelError

#: One field's value: a scalar token, a decoded string, or a nested message.
Value = Union[str, bytes, "Message"]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<punct>[{}<>:\[\],;])
    |(?P<word>[^\s{}<>:\[\],;"'\#]+)
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": b"\n",
    "t": b"\t",
    "r": b"\r",
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
    "?": b"?",
}
_CLOSE = {"{": "}", "<": ">"}


class Message(dict[str, list[Value]]):
    """A parsed message: field name -> its values, in the order they appeared."""

    def first(self, name: str, default: Value | None = None) -> Value | None:
        """The first value of field ``name`` (``default`` when absent)."""
        values = self.get(name)
        return values[0] if values else default

    def messages(self, name: str) -> list[Message]:
        """The values of field ``name`` that are messages."""
        return [v for v in self.get(name, []) if isinstance(v, Message)]

    def text(self, name: str, default: str = "") -> str:
        """The first value of field ``name`` as text (strings decoded as UTF-8)."""
        value = self.first(name)
        if value is None or isinstance(value, Message):
            return default
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def unescape(literal: str) -> bytes:
    """Decode a quoted text-format string (its quotes included) into bytes."""
    body = literal[1:-1]
    if "\\" not in body:
        return body.encode("utf-8")
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            j = body.find("\\", i)
            j = n if j < 0 else j
            out += body[i:j].encode("utf-8")
            i = j
            continue
        if i + 1 >= n:
            raise InvalidModelError("a string ends with a lone backslash")
        esc = body[i + 1]
        if esc in _ESCAPES:
            out += _ESCAPES[esc]
            i += 2
        elif esc in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert m is not None
            out.append(int(m.group(), 8) & 0xFF)
            i += 1 + len(m.group())
        elif esc in "xX":
            m = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2 :])
            if m is None:
                raise InvalidModelError("a string has a malformed \\x escape")
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
                raise InvalidModelError("a string has a malformed \\u escape")
            out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        else:
            raise InvalidModelError(f"a string has an unknown escape \\{esc}")
    return bytes(out)


class _Tokens:
    def __init__(self, text: str) -> None:
        self._it: Iterator[re.Match[str]] = _TOKEN.finditer(text)
        self._text = text
        self._peeked: tuple[str, str] | None = None
        self._pos = 0

    def _advance(self) -> tuple[str, str]:
        for m in self._it:
            kind = m.lastgroup
            assert kind is not None
            if m.start() != self._pos:
                raise InvalidModelError(f"unexpected character at offset {self._pos}")
            self._pos = m.end()
            if kind != "space":
                return kind, m.group()
        if self._pos != len(self._text):
            raise InvalidModelError(f"unexpected character at offset {self._pos}")
        return "end", ""

    def peek(self) -> tuple[str, str]:
        if self._peeked is None:
            self._peeked = self._advance()
        return self._peeked

    def next(self) -> tuple[str, str]:
        token = self.peek()
        self._peeked = None
        return token

    def expect(self, value: str) -> None:
        kind, got = self.next()
        if got != value or kind == "string":
            raise InvalidModelError(f"expected {value!r}, found {got or 'the end'!r}")


def parse(text: str, *, skip: frozenset[str] = frozenset()) -> Message:
    """Parse a whole text-format message; fields named in ``skip`` are passed over."""
    tokens = _Tokens(text)
    message = _message(tokens, "", skip)
    return message


def _message(tokens: _Tokens, close: str, skip: frozenset[str]) -> Message:
    out = Message()
    while True:
        kind, token = tokens.next()
        if kind == "end":
            if close:
                raise InvalidModelError(f"the text ends before a closing {close!r}")
            return out
        if token == close and kind == "punct":
            return out
        if token == "[" and kind == "punct":  # an extension or Any type URL: [type/name]
            parts = []
            while (t := tokens.next())[1] != "]":
                if t[0] == "end":
                    raise InvalidModelError("the text ends inside [...]")
                parts.append(t[1])
            name = "[" + "".join(parts) + "]"
        elif kind == "word":
            name = token
        else:
            raise InvalidModelError(f"expected a field name, found {token!r}")
        colon = tokens.peek() == ("punct", ":")
        if colon:
            tokens.next()
        values = out.setdefault(name, [])
        if tokens.peek() == ("punct", "[") and colon:
            tokens.next()
            if tokens.peek() != ("punct", "]"):
                while True:
                    values.append(_value(tokens, name, skip))
                    if tokens.peek() == ("punct", ","):
                        tokens.next()
                        continue
                    break
            tokens.expect("]")
        else:
            value = _value(tokens, name, skip)
            if not colon and not isinstance(value, Message):
                raise InvalidModelError(f"expected ':' after field {name!r}")
            values.append(value)
        if tokens.peek() in (("punct", ","), ("punct", ";")):
            tokens.next()


def _value(tokens: _Tokens, name: str, skip: frozenset[str]) -> Value:
    kind, token = tokens.next()
    if kind == "punct" and token in _CLOSE:
        if name in skip:
            _skip(tokens, _CLOSE[token])
            return Message()
        return _message(tokens, _CLOSE[token], skip)
    if kind == "string":
        data = unescape(token)
        while tokens.peek()[0] == "string":  # adjacent strings concatenate
            data += unescape(tokens.next()[1])
        return data
    if kind == "word":
        return token
    raise InvalidModelError(f"expected a value for field {name!r}, found {token or 'the end'!r}")


def _skip(tokens: _Tokens, close: str) -> None:
    depth = [close]
    while depth:
        kind, token = tokens.next()
        if kind == "end":
            raise InvalidModelError("the text ends inside a message")
        if kind == "punct":
            if token in _CLOSE:
                depth.append(_CLOSE[token])
            elif token == depth[-1]:
                depth.pop()
