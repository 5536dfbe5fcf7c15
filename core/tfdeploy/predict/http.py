"""The one HTTP client helper: JSON requests whose failures become tfdeploy errors.

Every HTTP call tfdeploy and its plugins make to a prediction server or a service API goes
through :func:`request_json` (or :func:`request`), so a refused connection, a timeout or an
error status means the same thing wherever it happens: :func:`tfdeploy.errors.from_http_status`
and :func:`tfdeploy.errors.from_connection_error` decide the error's class, code and whether it
is retryable. Bodies are the contract's JSON (:mod:`tfdeploy.predict.wire`): ``NaN`` and
``Infinity`` travel as bare tokens.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tfdeploy.errors import TfdeployError, from_connection_error, from_http_status

#: Seconds a request may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 60.0

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "tfdeploy_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Give every remote call made inside (in this thread) at most ``seconds`` in all.

    The operations set one around each target call, with the operation's ``timeout``; nested
    deadlines keep the nearest. :func:`request` and the targets' own clients ask
    :func:`time_left` for the timeout of each call.
    """
    at = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(at if current is None else min(at, current))
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(timeout: float) -> float:
    """The timeout for one remote call: ``timeout``, or less when a :func:`deadline` is nearer
    (``0.0`` once it has passed)."""
    at = _deadline.get()
    if at is None:
        return timeout
    return max(0.0, min(timeout, at - time.monotonic()))


@dataclass(frozen=True)
class Response:
    """A successful answer: status, headers (lower-case names) and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (an empty body is ``None``)."""
        from tfdeploy.predict import wire

        return wire.loads(self.body) if self.body else None


def request(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> Response:
    """Send one request; a status of 400 or above raises the mapped :class:`RemoteError`.

    The error's message names the URL and status and carries the server's ``error`` text
    (``{"error": "..."}`` as TF Serving and tfdeploy answer, ``{"error": {"message": ...}}``
    as Google APIs do, or the start of a plain-text body).
    """
    timeout = time_left(timeout)
    if timeout <= 0:
        raise from_connection_error(url, "no time left before the deadline", timed_out=True)
    try:
        req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
    except ValueError as exc:  # not a URL urllib can send
        raise from_http_status(400, f"cannot send a request to {url!r}: {exc}") from exc
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as answer:
            return Response(
                status=answer.status,
                headers={k.lower(): v for k, v in answer.headers.items()},
                body=answer.read(),
            )
    except urllib.error.HTTPError as exc:
        detail = error_detail(exc.read())
        raise from_http_status(exc.code, f"{url} answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        timed_out = isinstance(reason, (TimeoutError, socket.timeout))
        raise from_connection_error(url, _reason_text(reason), timed_out=timed_out) from exc
    except TimeoutError as exc:
        raise from_connection_error(url, "timed out", timed_out=True) from exc
    except OSError as exc:  # a reset or a half-closed connection while reading the answer
        raise from_connection_error(url, _reason_text(exc)) from exc
    except (http.client.InvalidURL, ValueError) as exc:  # a URL it cannot send: ours to fix
        raise from_http_status(400, f"cannot send a request to {url}: {exc}") from exc
    except http.client.HTTPException as exc:  # an answer that is not HTTP
        raise from_http_status(502, f"{url} answered what is not HTTP: {exc!r}") from exc


def request_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> Any:
    """Send ``body`` (if any) as JSON and return the decoded JSON answer."""
    from tfdeploy.predict import wire

    data = wire.dumps(body) if body is not None else None
    sent = {"Accept": "application/json", **(headers or {})}
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    answer = request(method, url, data=data, headers=sent, timeout=timeout, context=context)
    try:
        return answer.json()
    except TfdeployError as exc:
        raise from_http_status(502, f"{url} answered with a body that is not JSON") from exc


def error_detail(raw: bytes) -> str:
    """The error text of an error answer's body, at most 500 characters."""
    from tfdeploy.predict import wire

    try:
        body = wire.loads(raw)
    except TfdeployError:
        return raw.decode("utf-8", errors="replace").strip()[:500] or "no details"
    if isinstance(body, Mapping) and "error" in body:
        error = body["error"]
        if isinstance(error, Mapping) and "message" in error:
            return str(error["message"])[:500]
        return str(error)[:500]
    return str(body)[:500]


def _reason_text(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__
