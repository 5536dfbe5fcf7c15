"""The wire side of the fake Connect server: a threaded HTTP/1.1 server on 127.0.0.1.

It reads each request, chunked bodies included (rsconnect-python uploads bundles with
``Transfer-Encoding: chunked`` and no ``Content-Length``), and hands it to an application
callable. The application answers with a :class:`Reply`, or with :data:`DROP` (close the
connection without an answer) or :data:`HOLD` (answer nothing until the client hangs up or the
server stops). The server logs nothing.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

DROP: Literal["drop"] = "drop"
HOLD: Literal["hold"] = "hold"


@dataclass
class Reply:
    """An HTTP answer: status, headers (without hop-by-hop ones) and the whole body."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, value: object) -> Reply:
        """A JSON answer."""
        return cls(status, json.dumps(value).encode(), [("Content-Type", "application/json")])


@dataclass
class Request:
    """One request as read from the wire."""

    method: str
    path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string's parameters."""
        return parse_qs(self.raw_query)

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), if any."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


Answer = Reply | Literal["drop", "hold"]
App = Callable[[Request], Answer]


class Server:
    """Serves ``app`` on a free port of 127.0.0.1 in a background thread."""

    def __init__(self, app: App) -> None:
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = app  # type: ignore[attr-defined]
        self._httpd.stopping = self.stopping  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-connect-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and release the requests being held."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeConnect"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: nothing a request carries ends up in a log."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        try:
            body = self._read_body(chunked)
        except (ValueError, OSError):
            self.close_connection = True
            return
        request = Request(
            self.command, parts.path, parts.query, list(self.headers.items()), body, chunked
        )
        answer = self.server.app(request)  # type: ignore[attr-defined]
        if answer == DROP:
            self.close_connection = True
        elif answer == HOLD:
            self.close_connection = True
            self._hold(self.server.stopping)  # type: ignore[attr-defined]
        else:
            self._send(answer)

    def _read_body(self, chunked: bool) -> bytes:
        if not chunked:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        data = bytearray()
        while True:
            size_field = self.rfile.readline(65537).split(b";", 1)[0].strip()
            if not size_field:
                raise ValueError("a chunk without a size")
            size = int(size_field, 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(data)
            data += self.rfile.read(size)
            self.rfile.readline(3)

    def _hold(self, stopping: threading.Event) -> None:
        sock: socket.socket = self.connection
        while not stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        return  # the client hung up
                except OSError:
                    return

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
