"""The HTTP side of ``tfdeploy serve``: one ASGI application, three audiences.

- R tfdeploy / Posit Connect: ``POST /<signature>/predict[/]``, answered in the R package's
  format (every output keyed by name, one object per instance), ``/openapi.json`` (also
  ``/swagger.json``) and the docs page at ``/``.
- TF Serving REST: ``/v1/models/<name>[/versions/<v>|/labels/<l>][/metadata|:predict|:classify|:regress]``,
  parsed as TF Serving's REST handler parses it: every other ``/v1/`` path or method is a 400
  ``Malformed request``.
- Operations: ``/healthz``, ``/metrics``, and ``POST /_noop`` (parses the body like a predict
  and answers at once: the baseline the benchmarks compare predict against).

Written against ASGI directly, without a framework, so that the only work on the event loop is
the work a prediction needs, and every error, including an unknown route, is JSON. Requests are
parsed and checked against their signature before they are queued, so a bad request fails
alone; large bodies are parsed on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any

import numpy as np

from tfdeploy.errors import (
    InvalidInputError,
    PredictionError,
    RequestTooLargeError,
    ServerBusyError,
    SignatureNotFoundError,
    TfdeployError,
)
from tfdeploy.predict import tfexample, wire
from tfdeploy.server import openapi
from tfdeploy.server.limits import (
    ABORT_KEY,
    DEFAULT_MAX_BODY_BYTES,
    ByteBudget,
    ServerLimits,
    deadline,
)
from tfdeploy.server.repository import ModelRepository, Servable

log = logging.getLogger("tfdeploy.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Bodies larger than this are parsed and answered on a worker thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024

# TF Serving's REST handler's routes (http_rest_api_util.cc), matched on the raw path.
_TFS_PREFIX = re.compile(r"/v1/", re.IGNORECASE)
_TFS_POST = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>classify|regress|predict)",
    re.IGNORECASE,
)
_TFS_GET = re.compile(
    r"/v1/models(?:/(?P<name>[^/:]+))?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<meta>metadata))?",
    re.IGNORECASE,
)
_INT64_MAX = 2**63 - 1
_PREDICT = re.compile(r"^/(?P<signature>[^/]+)/predict/?$")
_JSON = [(b"content-type", b"application/json")]
_STATIC_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}


class HttpError(TfdeployError):
    """An HTTP-level problem (unknown route, wrong method) with its own status."""

    def __init__(self, status: int, message: str) -> None:
        codes = {404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED"}
        super().__init__(message, code=codes.get(status, "INVALID_ARGUMENT"))
        self.status = status

    @property
    def http_status(self) -> int:
        """The status this error answers with."""
        return self.status


class _Disconnected(Exception):
    pass


def _static_files() -> dict[str, tuple[bytes, bytes]]:
    files: dict[str, tuple[bytes, bytes]] = {}
    root = resources.files("tfdeploy") / "static"
    if not root.is_dir():
        return files
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return files


class _Body:
    """What one request's body holds of the server: bytes reserved, and whether it was read."""

    __slots__ = ("held", "read")

    def __init__(self) -> None:
        self.held = 0
        self.read = True  # until a request with a body starts reading it


class RestApp:
    """The ASGI application of ``tfdeploy serve`` over a :class:`ModelRepository`.

    A body must arrive within ``limits.body_timeout`` (else 408) and an answer be read within
    it; request bodies in flight are bounded in bytes by ``budget`` (else 503), shared with
    the gRPC side when one is given.
    """

    def __init__(
        self,
        repository: ModelRepository,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        limits: ServerLimits | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        self.repository = repository
        self.metrics = repository.metrics
        self.max_body_bytes = max_body_bytes
        self.limits = limits or ServerLimits(max_inflight_bytes=max(2 * max_body_bytes, 1))
        self.limits.check(max_body_bytes)
        self.budget = budget or ByteBudget(self.limits.max_inflight_bytes)
        self.metrics.add_gauge(
            "tfdeploy_inflight_bytes",
            "Bytes of request bodies being read, parsed, queued or answered.",
            lambda: float(self.budget.used),
        )
        self._static = _static_files()
        # The spec of the servable it was built for, held weakly: an unloaded version must not
        # stay in memory because its spec was the last one asked for.
        self._spec_cache: tuple[weakref.ref[Servable], bytes] | None = None
        self._in_flight = 0
        self.metrics.add_gauge(
            "tfdeploy_requests_in_flight",
            "HTTP requests being answered.",
            lambda: float(self._in_flight),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI request."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route = "unknown"
        self._in_flight += 1
        request = _Body()
        try:
            try:
                route, status, headers, body = await self._dispatch(scope, receive, request)
            except _Disconnected:
                return
            except TfdeployError as exc:
                status, headers = exc.http_status, _JSON
                body = wire.dumps({"error": exc.describe()})
                self.metrics.errors.inc(getattr(exc, "code", "UNKNOWN"))
            except Exception as exc:  # never a traceback to the client
                log.exception("internal error answering %s %s", scope["method"], scope["path"])
                status, headers = 500, _JSON
                body = wire.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
                self.metrics.errors.inc("INTERNAL")
            if not request.read:  # a body too slow to arrive, or to drain: end the connection
                headers = [*headers, (b"connection", b"close")]
            await self._send(scope, send, status, headers, body)
        finally:
            self._in_flight -= 1
            self.budget.release(request.held)
        self.metrics.requests.inc("rest", route, str(status))
        self.metrics.latency.observe(time.perf_counter() - started, "rest", route)

    async def _send(
        self, scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Send the answer; a client that does not read it within the body timeout is cut off."""
        start = {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
        try:
            with deadline(self.limits.body_timeout):
                await send(start)
                await send({"type": "http.response.body", "body": body})
        except TimeoutError:
            abort = scope.get(ABORT_KEY)
            if abort is not None:
                abort()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(
        self, scope: Scope, receive: Receive, request: _Body
    ) -> tuple[str, int, list[tuple[bytes, bytes]], bytes]:
        path: str = scope["path"]
        method: str = scope["method"]
        if _TFS_PREFIX.match(path):
            raw_path = scope.get("raw_path")
            return await self._tf_serving(
                raw_path.decode("latin-1") if raw_path else path, method, scope, receive, request
            )
        match = _PREDICT.match(path)
        if match is not None:
            self._method(method, "POST")
            raw = await self._body(scope, receive, request)
            answer = await self._predict(raw, None, None, None, match["signature"], dialect="r")
            return "predict", 200, _JSON, answer
        if path == "/_noop":
            self._method(method, "POST")
            raw = await self._body(scope, receive, request)
            wire.loads(raw)
            return "noop", 200, _JSON, b'{"predictions":[]}'
        self._method(method, "GET", "HEAD")
        if path in ("/openapi.json", "/swagger.json"):
            return "openapi", 200, _JSON, self._spec()
        if path in ("/healthz", "/healthz/ready", "/healthz/live"):
            return self._health(path)
        if path == "/metrics":
            text = self.metrics.render().encode()
            return "metrics", 200, [(b"content-type", b"text/plain; version=0.0.4")], text
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if (path == "/" or path.startswith("/static/") or path == "/index.html") and (
            name in self._static
        ):
            data, ctype = self._static[name]
            return "docs", 200, [(b"content-type", ctype)], data
        raise HttpError(404, f"no such route: {method} {path}")

    @staticmethod
    def _method(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(405, f"method {method} is not allowed here (use {', '.join(allowed)})")

    async def _body(self, scope: Scope, receive: Receive, request: _Body) -> bytes:
        """Read the body within the body timeout, its bytes reserved in the budget as they come
        (all at once when a Content-Length announces them).

        A body refused before its end (413, 503) is still read to its end, and dropped as it
        comes, so that the client, still sending, gets to read the answer.
        """
        limit = self.max_body_bytes
        request.read = False
        chunks, size = [], 0
        refused: TfdeployError | None = None
        try:
            with deadline(self.limits.body_timeout):
                try:
                    for key, value in scope["headers"]:
                        if key == b"content-length" and value.isdigit():
                            declared = int(value)
                            if declared > limit:
                                raise self._too_large(declared)
                            self.budget.reserve(declared)
                            request.held = declared
                    while not request.read:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            raise _Disconnected
                        chunk = message.get("body", b"")
                        size += len(chunk)
                        if size > limit:
                            raise self._too_large(size)
                        if size > request.held:
                            self.budget.reserve(size - request.held)
                            request.held = size
                        chunks.append(chunk)
                        request.read = not message.get("more_body")
                except (RequestTooLargeError, ServerBusyError) as exc:
                    refused = exc
                    chunks.clear()
                    self.budget.release(request.held)
                    request.held = 0
                    while not request.read:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            raise _Disconnected from None
                        request.read = not message.get("more_body")
                    raise
        except TimeoutError:
            if refused is not None:  # answered anyway; the unread rest closes the connection
                raise refused from None
            raise HttpError(
                408,
                f"the request's body did not arrive within {self.limits.body_timeout:g} s "
                f"({size} bytes came)",
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"the request body ({size} bytes) is larger than this server accepts "
            f"({self.max_body_bytes} bytes)",
            hint="send fewer instances per request, or start the server with a larger --max-body-bytes",
        )

    # --- predictions ----------------------------------------------------------------------

    async def _predict(
        self,
        raw: bytes,
        name: str | None,
        version: int | None,
        label: str | None,
        path_signature: str | None,
        *,
        dialect: wire.Dialect = "tf_serving",
    ) -> bytes:
        repo = self.repository
        offload = len(raw) > OFFLOAD_BYTES
        loop = asyncio.get_running_loop()
        # As TF Serving: the body is parsed before the servable is looked up.
        if offload:
            servable, request = await loop.run_in_executor(
                None, _prepare, raw, repo, (name, version, label), path_signature, dialect
            )
        else:
            servable, request = _prepare(raw, repo, (name, version, label), path_signature, dialect)
        if dialect == "tf_serving":
            wire.check_predict_method(request.signature)
        future = repo.submit(
            servable,
            request.signature.name,
            request.inputs,
            request.batch_size,
            name=name,
            version=version,
            label=label,
            loop=loop,
        )
        try:
            outputs = await future
        except PredictionError as exc:
            raise wire.explain_refusal(request, exc) from exc
        keyed = dialect == "r"
        if offload or (request.batch_size or 0) > 64:
            return await loop.run_in_executor(None, _encode, outputs, request, keyed)
        return _encode(outputs, request, keyed)

    async def _examples(
        self, raw: bytes, name: str, version: int | None, label: str | None, verb: str
    ) -> bytes:
        repo = self.repository
        method: tfexample.Method = "classify" if verb == "classify" else "regress"
        body = _request_object(raw)
        protos = tfexample.examples_to_protos(body, method, max_bytes=self.max_body_bytes)
        servable = repo.resolve(name, version, label)
        signature = tfexample.examples_signature(
            servable.signatures, body.get("signature_name"), method
        )
        key = tfexample.examples_input(signature, method)
        future = repo.submit(
            servable,
            signature.name,
            {key: np.array(protos, dtype=object)},
            len(protos),
            name=name,
            version=version,
            label=label,
            loop=asyncio.get_running_loop(),
            outputs=tuple(tfexample.examples_outputs(method, signature)),
        )
        outputs = await future
        if method == "classify":
            return wire.dumps(
                tfexample.classify_json(tfexample.classifications(outputs, len(protos)))
            )
        return wire.dumps(tfexample.regress_json(tfexample.regressions(outputs, len(protos))))

    # --- TF Serving -----------------------------------------------------------------------

    async def _tf_serving(
        self, path: str, method: str, scope: Scope, receive: Receive, request: _Body
    ) -> tuple[str, int, list[tuple[bytes, bytes]], bytes]:
        """TF Serving's REST handler: parse the route as it does, then answer."""
        match = None
        if method == "POST":
            match = _TFS_POST.fullmatch(path)
            if match is not None and match["verb"] not in ("predict", "classify", "regress"):
                match = None  # the route matches case-insensitively, the verb dispatch does not
        elif method == "GET":
            match = _TFS_GET.fullmatch(path)
        if match is None:
            raise InvalidInputError(f"Malformed request: {method} {scope['path']}")
        name = _unquote(match["name"] or "", "model name")
        version = _version(match["version"])
        label = _unquote(match["label"], "model version label") if match["label"] else None
        if method == "POST":
            raw = await self._body(scope, receive, request)
            verb = match["verb"]
            if verb == "predict":
                answer = await self._predict(raw, name, version, label, None)
                return "tfs_predict", 200, _JSON, answer
            return f"tfs_{verb}", 200, _JSON, await self._examples(raw, name, version, label, verb)
        if not name:
            raise InvalidInputError("Missing model name in request.")
        if match["meta"]:
            servable = self.repository.resolve(name, version, label)
            return "tfs_metadata", 200, _JSON, wire.dumps(metadata(servable))
        statuses = self.repository.status(name, version, label)
        body = {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": s.state,
                    "status": {"error_code": s.error_code, "error_message": s.error_message},
                }
                for s in statuses
            ]
        }
        return "tfs_status", 200, _JSON, wire.dumps(body)

    # --- documents ------------------------------------------------------------------------

    def _spec(self) -> bytes:
        servable = self.repository.resolve()
        cached = self._spec_cache
        if cached is not None and cached[0]() is servable:
            return cached[1]
        spec = openapi.build_spec(
            servable.signatures, model_name=servable.name, version=servable.version
        )
        data = wire.dumps(spec)
        self._spec_cache = (weakref.ref(servable), data)
        return data

    def _health(self, path: str) -> tuple[str, int, list[tuple[bytes, bytes]], bytes]:
        ready = self.repository.ready
        if path == "/healthz/live":
            return "health", 200, _JSON, b'{"live":true}'
        body = {"live": True, "ready": ready, "models": self.repository.names}
        return "health", 200 if ready else 503, _JSON, wire.dumps(body)


def _unquote(text: str, what: str) -> str:
    """A path part percent-decoded, as TF Serving decodes model names and labels."""
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"Failed to decode {what}:{text}") from exc


def _version(text: str | None) -> int | None:
    """A version from the path; one that overflows int64 is refused as TF Serving refuses it."""
    if text is None:
        return None
    version = int(text)
    if version > _INT64_MAX:
        raise InvalidInputError(f"Failed to convert version: {text} to numeric.")
    return version


def _request_object(raw: bytes) -> Any:
    """The JSON body of a request: TF Serving's errors for an empty or non-object body."""
    if not raw.strip():
        raise InvalidInputError(
            "JSON Parse error: The document is empty",
            hint='send a JSON object such as {"instances": [...]}',
        )
    try:
        return wire.loads(raw)
    except InvalidInputError as exc:
        raise InvalidInputError(f"JSON Parse error: {exc.message}", hint=exc.hint) from exc


def _prepare(
    raw: bytes,
    repository: ModelRepository,
    target: tuple[str | None, int | None, str | None],
    path_signature: str | None,
    dialect: wire.Dialect,
) -> tuple[Servable, wire.PreparedRequest]:
    body = _request_object(raw)
    servable = repository.resolve(*target)
    return servable, _prepare_body(body, servable.signatures, path_signature, dialect)


def _prepare_body(
    body: Any, signatures: Any, path_signature: str | None, dialect: wire.Dialect
) -> wire.PreparedRequest:
    if dialect == "r":
        name = body.get("signature_name", path_signature) if isinstance(body, dict) else None
        if isinstance(name, str) and name not in signatures:
            raise SignatureNotFoundError(
                f"Signature '{name}' not available in model signatures. Available signatures: "
                f"{','.join(sorted(signatures))}.",
                code="NOT_FOUND",
                hint="post to /<signature>/predict with one of the model's signatures",
            )
    return wire.prepare(body, signatures, signature_name=path_signature, dialect=dialect)


def _encode(outputs: dict[str, np.ndarray], request: wire.PreparedRequest, keyed: bool) -> bytes:
    return wire.encode_answer(outputs, request.format, keyed=keyed)


def metadata(servable: Servable) -> dict[str, Any]:
    """TF Serving's ``/metadata`` answer for one servable.

    Every SignatureDef of its serving MetaGraph (TensorFlow's internal init-op signature
    included, as TF Serving lists it), printed as TF Serving prints it: protobuf's JSON with
    the proto field names and every field without presence, so ``"defaults": {}`` too.
    """
    return {
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": str(servable.version),
        },
        "metadata": {"signature_def": {"signature_def": signature_defs_json(servable)}},
    }


def signature_defs_json(servable: Servable) -> dict[str, Any]:
    """The servable's SignatureDefs as protobuf JSON (from its loaded MetaGraphDef)."""
    meta = servable.meta_graph_def
    if meta is None:
        return {name: sig.to_tf_serving() for name, sig in servable.signatures.items()}
    from google.protobuf import json_format

    return {
        name: json_format.MessageToDict(
            sig, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for name, sig in sorted(meta.signature_def.items())
    }
