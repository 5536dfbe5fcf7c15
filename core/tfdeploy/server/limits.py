"""What one client may hold of the server: time, connections and bytes in flight.

- :class:`ServerLimits`: the limits, with the defaults ``tfdeploy serve`` uses.
- :func:`limited_protocol`: uvicorn's HTTP protocol (httptools or h11) plus what it lacks: a
  deadline for a request's headers, and a cap on open connections. uvicorn itself closes idle
  keep-alive connections (``timeout_keep_alive``); the ASGI application bounds the time a body
  may take to arrive and an answer to be read, through :func:`deadline` and the connection's
  ``abort`` that the protocol hands it in ``scope``.
- :class:`ByteBudget`: the bytes of requests being read, parsed, queued or answered, across
  REST and gRPC; a request that would go over gets 503 at once instead of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from tfdeploy.errors import ServerBusyError

#: Default largest request body (and gRPC message), in bytes.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

#: Where the protocol puts the connection's ``abort()`` in an ASGI scope.
ABORT_KEY = "tfdeploy.abort"


@dataclass(frozen=True)
class ServerLimits:
    """How long a client may take and how much it may hold; see ``tfdeploy serve --help``."""

    #: Seconds from a connection's start (or its previous answer) to a request's complete
    #: headers; a slower client gets 408 and is disconnected.
    header_timeout: float = 10.0
    #: Seconds a request's body may take to arrive, and its answer to be read; a slower
    #: client gets 408 (for the body) or is disconnected (for the answer).
    body_timeout: float = 30.0
    #: Seconds an idle keep-alive connection stays open.
    keep_alive_timeout: int = 5
    #: Most open HTTP connections; more are answered 503 and closed at once.
    max_connections: int = 1000
    #: Most bytes of request bodies and messages in flight at once; beyond it 503.
    max_inflight_bytes: int = 2 * DEFAULT_MAX_BODY_BYTES

    def check(self, max_body_bytes: int) -> None:
        """Raise ValueError for a limit that cannot work."""
        if min(self.header_timeout, self.body_timeout, self.keep_alive_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("the connection limit must be positive")
        if self.max_inflight_bytes < max_body_bytes:
            raise ValueError(
                f"the in-flight byte limit ({self.max_inflight_bytes}) must be at least the "
                f"body limit ({max_body_bytes}), or the largest request could never be served"
            )


class ByteBudget:
    """Bytes of requests in flight, shared by the REST and gRPC sides (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        return self._used

    def reserve(self, n: int) -> None:
        """Reserve ``n`` more bytes, or raise :class:`ServerBusyError` (503) if they do not fit."""
        with self._lock:
            if self._used + n > self.limit:
                used = self._used
            else:
                self._used += n
                return
        raise ServerBusyError(
            f"the server is busy: {used} bytes of requests are in flight, and {n} more would "
            f"pass its limit of {self.limit}",
            hint="retry shortly, or start the server with a larger --max-inflight-bytes",
        )

    def release(self, n: int) -> None:
        """Give back ``n`` reserved bytes."""
        with self._lock:
            self._used = max(0, self._used - n)

    @contextlib.contextmanager
    def held(self, n: int) -> Iterator[None]:
        """Reserve ``n`` bytes for the duration of a block."""
        self.reserve(n)
        try:
            yield
        finally:
            self.release(n)


class Deadline:
    """Cancels the current task at a point in time, unless cancelled first.

    Python 3.10's stand-in for ``asyncio.timeout``: use as ``with deadline(seconds) as d:``
    around awaits, then ``d.expired`` tells a timeout from any other cancellation.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> Deadline:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.seconds, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self.expired and kind is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            raise TimeoutError(f"not done within {self.seconds:g} s") from None


def deadline(seconds: float) -> Deadline:
    """A :class:`Deadline` of ``seconds`` from now; its block raises TimeoutError when late."""
    return Deadline(seconds)


_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\nretry-after: 1\r\ncontent-length: %d\r\n\r\n%s"
)


def _answer(template: bytes, message: str) -> bytes:
    body = b'{"error":"%s"}' % message.encode()
    return template % (len(body), body)


def limited_protocol(base: type[asyncio.Protocol], limits: ServerLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol class ``base`` that enforces ``limits``.

    A connection beyond ``max_connections`` gets 503 and is closed. From a connection's start,
    and again after each answer, the next request's headers must be complete within
    ``header_timeout``, or the client gets 408 and is disconnected. The ASGI application finds
    the connection's ``abort()`` in ``scope[ABORT_KEY]``.
    """
    header_timeout = limits.header_timeout
    body_timeout = limits.body_timeout
    max_connections = limits.max_connections
    late = _answer(
        _TIMEOUT_ANSWER, f"the request's headers did not arrive within {header_timeout:g} s"
    )
    full = _answer(_BUSY_ANSWER, f"the server has {max_connections} open connections already")

    class LimitedProtocol(base):  # type: ignore[valid-type,misc]
        """uvicorn's protocol with a header deadline and a connection cap."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_timer: asyncio.TimerHandle | None = None
            self._armed_for: Any = None
            inner: Callable[..., Awaitable[None]] = cast(Any, self).app

            async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
                scope[ABORT_KEY] = self._abort
                await inner(scope, receive, send)

            self.app = app

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(full)
                transport.close()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                # An answer given before the body was read (413, 503): the rest of the body is
                # read and dropped, so the client gets to read the answer; it has the body
                # timeout for that, then the next request's headers are due.
                draining = self.cycle is not None and self.cycle.more_body
                self._arm(body_timeout if draining else header_timeout)

        def _arm(self, seconds: float = header_timeout) -> None:
            self._disarm()
            self._armed_for = self.cycle
            self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            cycle = self.cycle
            busy = cycle is not None and not cycle.response_complete
            if busy or cycle is not self._armed_for or self.transport.is_closing():
                return  # a request's headers arrived in time; its answer re-arms the timer
            self.transport.write(late)
            self.transport.close()

        def _abort(self) -> None:
            if self.transport is not None:
                self.transport.abort()

    LimitedProtocol.__name__ = LimitedProtocol.__qualname__ = f"Limited{base.__name__}"
    return LimitedProtocol
