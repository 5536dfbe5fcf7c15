"""Starting and stopping ``tfdeploy serve``: :func:`serve_savedmodel`.

Loads the models, binds the REST port (uvicorn with uvloop and httptools when installed) and,
if asked, the gRPC port, prints where they listen, and either blocks until SIGINT/SIGTERM (then
finishes in-flight requests before exiting) or returns a :class:`ServerHandle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import threading
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfdeploy.errors import ConfigError, DependencyError, ServableNotFoundError
from tfdeploy.secrets import add_secret
from tfdeploy.server.batching import BatchingOptions
from tfdeploy.server.limits import (
    DEFAULT_MAX_BODY_BYTES,
    ByteBudget,
    ServerLimits,
    limited_protocol,
)
from tfdeploy.server.metrics import Metrics
from tfdeploy.server.repository import (
    DEFAULT_MODEL_NAME,
    ModelConfig,
    ModelRepository,
    read_config_file,
)
from tfdeploy.server.rest import RestApp

#: Seconds that a stopping server gives in-flight requests.
GRACE_SECONDS = 30.0


@dataclass
class ServerHandle:
    """A server running in the background: where it listens, and how to stop it."""

    url: str
    grpc_address: str | None
    repository: ModelRepository
    _server: Any
    _thread: threading.Thread
    _grpc: Any

    @property
    def port(self) -> int:
        """The REST port."""
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))

    def stop(self) -> None:
        """Stop accepting requests, finish those in flight, unload the models."""
        self._server.should_exit = True
        self._thread.join()
        _shutdown(self._grpc, self.repository)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def model_configs(
    path: str | os.PathLike[str] | None = None,
    *,
    model_base_path: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    model_config_file: str | os.PathLike[str] | None = None,
) -> list[ModelConfig]:
    """The models to serve, from exactly one of a path, a base path or a config file."""
    given = [x is not None for x in (path, model_base_path, model_config_file)]
    if sum(given) != 1:
        raise ConfigError(
            "give exactly one of a SavedModel path, --model-base-path or --model-config-file"
        )
    if path is not None:
        return [ModelConfig.for_path(path, model_name)]
    if model_base_path is not None:
        base = Path(model_base_path).expanduser().resolve()
        return [ModelConfig(model_name or DEFAULT_MODEL_NAME, base)]
    assert model_config_file is not None
    return read_config_file(model_config_file)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port (0 picks a free one)",
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn_server(app: RestApp, limits: ServerLimits) -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise DependencyError(
            "uvicorn is needed to serve", hint="pip install 'tfdeploy-kit[serve]'"
        ) from exc

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the signal that stopped it.

        uvicorn raises SIGTERM again after its graceful shutdown, which would end the process
        before the gRPC server and the batchers are stopped in turn.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    loop = "uvloop" if _has("uvloop") else "asyncio"
    protocol: type[asyncio.Protocol]
    if _has("httptools"):
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        protocol = HttpToolsProtocol
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        protocol = H11Protocol
    config = uvicorn.Config(
        app,
        loop=loop,
        http=limited_protocol(protocol, limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(GRACE_SECONDS),
        backlog=2048,
    )
    return Server(config)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _shutdown(grpc_server: Any, repository: ModelRepository) -> None:
    if grpc_server is not None:
        grpc_server.stop(GRACE_SECONDS)
    repository.close()


def _banner(url: str, repository: ModelRepository, grpc_address: str | None) -> str:
    lines = [f"Starting server under {url} with the following API entry points:"]
    try:
        lines += [f"  {url}/{name}/predict/" for name in repository.resolve().signatures]
    except ServableNotFoundError:
        lines.append(f"  {url}/<signature>/predict/ (once a model version is loaded)")
    for name in repository.names:
        lines.append(f"TF Serving REST: {url}/v1/models/{name}")
    if grpc_address:
        lines.append(f"gRPC: {grpc_address}")
    lines.append(f"Docs: {url}/  OpenAPI: {url}/openapi.json  Metrics: {url}/metrics")
    return "\n".join(lines)


def serve_savedmodel(
    path: str | os.PathLike[str] | None = None,
    *,
    model_base_path: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    model_config_file: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8089,
    grpc_port: int | None = None,
    background: bool = False,
    poll_seconds: float = 1.0,
    max_batch_size: int = 64,
    batch_timeout_micros: int = 0,
    max_enqueued: int = 1024,
    num_batch_threads: int = 1,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    allow_config_reload: bool | None = None,
    admin_token: str | None = None,
    limits: ServerLimits | None = None,
    browse: bool = False,
    quiet: bool = False,
) -> ServerHandle | None:
    """Serve a SavedModel (or a model base path, or a TF Serving model config file).

    The REST API speaks R tfdeploy's ``/<signature>/predict`` and TF Serving's ``/v1/models``;
    with ``grpc_port`` (0 picks a free port) TF Serving's gRPC API listens too. ``port=0`` picks
    a free port. Prints the URL and one predict URL per signature unless ``quiet``.

    With ``background=True`` returns a :class:`ServerHandle` (``.url``, ``.grpc_address``,
    ``.stop()``) once the server answers; otherwise blocks until SIGINT or SIGTERM, then
    finishes the requests in flight and returns ``None``.

    ``HandleReloadConfigRequest``, which can point a model at any SavedModel path, is allowed
    by default only when ``host`` is a loopback address; ``allow_config_reload=True`` allows
    it on any address, ``False`` nowhere. With ``admin_token`` a reload must carry
    ``authorization: Bearer <token>``.

    ``limits`` (:class:`~tfdeploy.server.limits.ServerLimits`) bounds what clients may hold:
    header and body timeouts, idle keep-alive time, open connections, and bytes of requests
    in flight (REST and gRPC together; by default twice ``max_body_bytes``).
    """
    if admin_token:
        add_secret(admin_token)
    configs = model_configs(
        path,
        model_base_path=model_base_path,
        model_name=model_name,
        model_config_file=model_config_file,
    )
    options = BatchingOptions(
        max_batch_size=max_batch_size,
        batch_timeout_micros=batch_timeout_micros,
        max_enqueued_batches=max_enqueued,
        num_batch_threads=num_batch_threads,
    )
    if min(max_batch_size, max_enqueued, num_batch_threads, max_body_bytes) < 1:
        raise ConfigError("batch size, queue bound, batch threads and body limit must be positive")
    limits = limits or ServerLimits(max_inflight_bytes=2 * max_body_bytes)
    try:
        limits.check(max_body_bytes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    budget = ByteBudget(limits.max_inflight_bytes)
    repository = ModelRepository(
        configs, options=options, metrics=Metrics(), poll_seconds=poll_seconds
    )
    repository.start()
    grpc_server = None
    sock: socket.socket | None = None
    try:
        sock = _bind(host, port)
        if grpc_port is not None:
            from tfdeploy.server.grpc_service import AdminPolicy, GrpcServer

            admin = AdminPolicy(
                allowed=is_loopback(host) if allow_config_reload is None else allow_config_reload,
                token=admin_token or None,
            )
            grpc_server = GrpcServer(
                repository,
                host,
                grpc_port,
                max_message_bytes=max_body_bytes,
                admin=admin,
                budget=budget,
            )
            grpc_server.start()
    except BaseException:
        if sock is not None:
            sock.close()
        _shutdown(grpc_server, repository)
        raise
    bound = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{bound}"
    app = RestApp(repository, max_body_bytes=max_body_bytes, limits=limits, budget=budget)
    server = _uvicorn_server(app, limits)
    grpc_address = grpc_server.address if grpc_server else None
    if not quiet:
        print(_banner(url, repository, grpc_address), flush=True)
    if browse:
        webbrowser.open(url + "/")
    if background:
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="tfdeploy-http", daemon=True
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                _shutdown(grpc_server, repository)
                raise ConfigError(f"the HTTP server on {url} failed to start")
            threading.Event().wait(0.01)
        return ServerHandle(url, grpc_address, repository, server, thread, grpc_server)
    try:
        server.run(sockets=[sock])
    finally:
        _shutdown(grpc_server, repository)
        sys.stdout.flush()
    return None


def create_app(
    path: str | os.PathLike[str] | None = None,
    *,
    model_base_path: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    model_config_file: str | os.PathLike[str] | None = None,
    poll_seconds: float = 1.0,
    batching: BatchingOptions | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> RestApp:
    """The REST API as an ASGI application with its models loaded, for any ASGI server.

    This is what a Connect deployment or another ASGI host mounts.
    """
    configs = model_configs(
        path,
        model_base_path=model_base_path,
        model_name=model_name,
        model_config_file=model_config_file,
    )
    repository = ModelRepository(
        configs, options=batching, metrics=Metrics(), poll_seconds=poll_seconds
    )
    repository.start()
    return RestApp(repository, max_body_bytes=max_body_bytes)
