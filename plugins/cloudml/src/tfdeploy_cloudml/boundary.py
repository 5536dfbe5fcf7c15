"""Where the Google client libraries' exceptions become tfdeploy errors.

Over REST the libraries raise ``google.api_core.exceptions`` named for the HTTP status (every
400 is ``BadRequest``; the google.rpc status name is only in the body), errors of failed
long-running operations named for their google.rpc code, ``requests`` exceptions for a
connection that failed or was dropped, and ``google.auth`` exceptions for credentials. Each
becomes the error :func:`~tfdeploy.plugin.from_http_status`,
:func:`~tfdeploy.plugin.from_grpc_status` or :func:`~tfdeploy.plugin.from_connection_error`
makes, so ``retryable`` means the same for this target as for every other.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tfdeploy.plugin import (
    ConfigError,
    TargetError,
    TfdeployError,
    from_connection_error,
    from_grpc_status,
    from_http_status,
)

# How google.api_core starts the message of an HTTP error: "POST https://...: ".
_REQUEST_LINE = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


@contextmanager
def boundary(what: str, where: str) -> Iterator[None]:
    """Translate the libraries' exceptions raised inside into tfdeploy errors.

    ``what`` says what was being done (``uploading version 3``), ``where`` names the service
    (``Vertex AI at https://...``) for connection errors.
    """
    try:
        yield
    except TfdeployError:
        raise
    except Exception as exc:
        error = translate(exc, what, where)
        if error is None:
            raise
        raise error from exc


def translate(exc: BaseException, what: str, where: str) -> TfdeployError | None:
    """The tfdeploy error for a client library exception, or ``None`` if it is not one."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, api.RetryError) and exc.cause is not None:
        return translate(exc.cause, what, where)
    if isinstance(exc, api.GoogleAPICallError):
        text = _REQUEST_LINE.sub("", str(exc.message or "")) or type(exc).__name__
        message = f"{what}: {text}"
        response = getattr(exc, "response", None)
        if isinstance(response, requests.Response) or exc.grpc_status_code is None:
            status = _rpc_status(response)
            detail = f"{message} ({status})" if status else message
            return from_http_status(int(exc.code or 500), detail, hint=_hint(status, exc.code))
        name = _code_name(exc.grpc_status_code)
        return from_grpc_status(name, f"{message} ({name})", hint=_hint(name, exc.code))
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        timed_out = isinstance(exc, requests.exceptions.Timeout) and not isinstance(
            exc, requests.exceptions.ConnectTimeout
        )
        return from_connection_error(where, reason(exc), timed_out=timed_out)
    if isinstance(exc, auth.DefaultCredentialsError):
        return ConfigError(
            f"{what}: no Google Cloud credentials",
            hint="run `gcloud auth application-default login`, set credentials_file to a "
            "service-account key, or anonymous: true for an emulator",
        )
    if isinstance(exc, auth.TransportError):
        return from_connection_error("the Google token service", reason(exc))
    if isinstance(exc, auth.RefreshError):
        return TargetError(
            f"{what}: the credentials were refused ({_first_line(exc)})",
            hint="check credentials_file (or the Application Default Credentials) and that "
            "the key is not disabled",
            code="UNAUTHENTICATED",
        )
    return None


def reason(exc: BaseException) -> str:
    """A short reason for a failed connection: refused, dropped, unknown host, timed out."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, (ConnectionResetError, ConnectionAbortedError)):
            return "the connection was closed without an answer"
        name = type(current).__name__
        if name in ("RemoteDisconnected", "IncompleteRead", "ProtocolError"):
            return "the connection was closed without an answer"
        if isinstance(current, TimeoutError) or "Timeout" in name:
            return "no answer in time"
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
    return _first_line(exc)


def _code_name(code: Any) -> str:
    """``INTERNAL`` from a ``grpc.StatusCode`` or a google.rpc code number."""
    name = getattr(code, "name", None)
    if isinstance(name, str):
        return name
    from google.rpc import code_pb2

    try:
        return str(code_pb2.Code.Name(int(code)))
    except ValueError:
        return "UNKNOWN"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _rpc_status(response: Any) -> str | None:
    """The google.rpc status name in a JSON error body (``FAILED_PRECONDITION``), if any."""
    try:
        status = response.json()["error"]["status"]
    except Exception:
        return None
    return status if isinstance(status, str) else None


def _hint(status: str | None, http: int | None) -> str | None:
    if status == "PERMISSION_DENIED" or http == 403:
        return (
            "the credentials need the Vertex AI User role (roles/aiplatform.user) and, for "
            "staging, Storage Object Admin on the bucket; see docs/cloudml.md"
        )
    if status == "UNAUTHENTICATED" or http == 401:
        return "check credentials_file or the Application Default Credentials"
    if status == "RESOURCE_EXHAUSTED" or http == 429:
        return "a Vertex AI quota was hit; wait, or ask for more quota in the Cloud console"
    return None
