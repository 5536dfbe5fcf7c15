"""Errors raised by tfdeploy, and the one table that maps status codes to them.

Every error carries a one-line message saying what is wrong and, where there is one, a
``hint`` saying what to do about it. Each error has a canonical status ``code`` (the names
gRPC and TensorFlow Serving use) and says whether it is ``retryable``; both are set when the
error is made, never changed afterwards. ``str(err)`` (what an uncaught error shows in a
traceback) and :meth:`TfdeployError.describe` both give the message followed by the hint, and
mask registered secrets (:mod:`tfdeploy.secrets`) as they print; ``err.message`` is kept as
given.

Hierarchy::

    TfdeployError                                                      code (default)
    ├── ModelError                  the SavedModel on disk                 FAILED_PRECONDITION
    │   ├── ModelNotFoundError      no such path, or no SavedModel there   NOT_FOUND
    │   └── InvalidModelError       corrupt saved_model.pb, missing tag    FAILED_PRECONDITION
    ├── BundleError                 an unsafe or malformed bundle archive  INVALID_ARGUMENT
    ├── PredictionError             a prediction could not be made         INVALID_ARGUMENT
    │   ├── InvalidInputError       a request that does not fit            INVALID_ARGUMENT
    │   └── SignatureNotFoundError  no such signature                      INVALID_ARGUMENT
    ├── RemoteError                 a server answered an error, or could   (from its status)
    │                               not be reached
    ├── ServableNotFoundError       no such model, version or label        NOT_FOUND
    ├── ConfigError                 deploy.yaml or a target's settings     INVALID_ARGUMENT
    ├── PluginError                 a plugin cannot load, or clashes       FAILED_PRECONDITION
    ├── DependencyError             an optional package is not installed   FAILED_PRECONDITION
    ├── ServerBusyError             a server's request queue is full       UNAVAILABLE, retryable
    ├── RequestTooLargeError        a request body over the server's limit RESOURCE_EXHAUSTED (413)
    └── TargetError                 a deploy target failed                 FAILED_PRECONDITION
        ├── TransientError          a failure worth retrying               UNAVAILABLE, retryable
        └── UnsupportedError        the target cannot do that              UNIMPLEMENTED

Status codes from other systems become errors here and nowhere else:
:func:`from_http_status` for an HTTP answer, :func:`from_grpc_status` for a gRPC one,
:func:`from_connection_error` for a server that cannot be reached. Servers answer an error with
:func:`http_status`. Lower-level exceptions are translated at the boundary with
``raise ... from exc`` so the original stays reachable for debugging.
"""

from __future__ import annotations

from typing import Any

from tfdeploy.secrets import redact

#: The canonical codes, in the order of their numbers (gRPC's and TensorFlow's ``error_code``),
#: with the HTTP status TF Serving answers each with and whether a retry may succeed.
CODES: dict[str, tuple[int, bool]] = {
    "OK": (200, False),
    "CANCELLED": (499, False),
    "UNKNOWN": (500, False),
    "INVALID_ARGUMENT": (400, False),
    "DEADLINE_EXCEEDED": (504, True),
    "NOT_FOUND": (404, False),
    "ALREADY_EXISTS": (409, False),
    "PERMISSION_DENIED": (403, False),
    "RESOURCE_EXHAUSTED": (429, True),
    "FAILED_PRECONDITION": (400, False),
    "ABORTED": (409, True),
    "OUT_OF_RANGE": (400, False),
    "UNIMPLEMENTED": (501, False),
    "INTERNAL": (500, False),
    "UNAVAILABLE": (503, True),
    "DATA_LOSS": (500, False),
    "UNAUTHENTICATED": (401, False),
}
CODE_NAMES: tuple[str, ...] = tuple(CODES)

#: HTTP statuses a remote server answers, as (canonical code, retryable). Other 4xx statuses
#: are INVALID_ARGUMENT and other 5xx are INTERNAL; neither is retried.
HTTP_STATUSES: dict[int, tuple[str, bool]] = {
    400: ("INVALID_ARGUMENT", False),
    401: ("UNAUTHENTICATED", False),
    403: ("PERMISSION_DENIED", False),
    404: ("NOT_FOUND", False),
    408: ("DEADLINE_EXCEEDED", True),
    409: ("ALREADY_EXISTS", False),
    413: ("RESOURCE_EXHAUSTED", False),
    429: ("RESOURCE_EXHAUSTED", True),
    499: ("CANCELLED", False),
    500: ("INTERNAL", True),
    501: ("UNIMPLEMENTED", False),
    502: ("UNAVAILABLE", True),
    503: ("UNAVAILABLE", True),
    504: ("DEADLINE_EXCEEDED", True),
}


def http_status(code: str) -> int:
    """The HTTP status a server answers an error of canonical ``code`` with (500 if unknown)."""
    return CODES.get(code, (500, False))[0]


def code_name(number: int) -> str:
    """The canonical code called by its number (TensorFlow's ``error_code``), or UNKNOWN."""
    return CODE_NAMES[number] if 0 <= number < len(CODE_NAMES) else "UNKNOWN"


class TfdeployError(Exception):
    """Base class of every error tfdeploy raises on purpose.

    ``code`` and ``retryable`` default to the class's and can be given when the error is made
    (an error translated from a remote status carries that status's). ``str(err)`` is what
    :meth:`describe` gives, the message and what to do about it, secrets masked, so a Python
    user who does not catch the error sees the hint too; :attr:`message` and :attr:`hint` are
    the two parts.
    """

    code: str = "INTERNAL"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.describe()

    @property
    def http_status(self) -> int:
        """The HTTP status a server answers this error with."""
        return http_status(self.code)

    def describe(self) -> str:
        """The message followed by the hint, as one line for a terminal, secrets masked."""
        text = f"{self.message} — {self.hint}" if self.hint else self.message
        return redact(text)


class ModelError(TfdeployError):
    """A problem with a SavedModel on disk."""

    code = "FAILED_PRECONDITION"


class ModelNotFoundError(ModelError):
    """No such path, or nothing that looks like a SavedModel there."""

    code = "NOT_FOUND"


class InvalidModelError(ModelError):
    """The SavedModel exists but cannot be read or used."""


class BundleError(TfdeployError):
    """A bundle archive is malformed or tries to write outside its own directory."""

    code = "INVALID_ARGUMENT"


class PredictionError(TfdeployError):
    """A prediction could not be made."""

    code = "INVALID_ARGUMENT"


class InvalidInputError(PredictionError):
    """A request or its instances do not fit the signature."""


class SignatureNotFoundError(PredictionError):
    """The request names a signature the model does not have."""


class RemoteError(TfdeployError):
    """A remote server answered with an error, or could not be reached.

    Made by :func:`from_http_status`, :func:`from_grpc_status` or
    :func:`from_connection_error`; ``status`` is the HTTP status (``None`` for gRPC and for a
    server that never answered).
    """

    def __init__(self, message: str, *, status: int | None = None, **options: Any) -> None:
        super().__init__(message, **options)
        self.status = status

    @property
    def http_status(self) -> int:
        """The remote's own HTTP status when it answered one."""
        return self.status if self.status is not None else http_status(self.code)


class ServableNotFoundError(TfdeployError):
    """A server has no model, version or label by that name."""

    code = "NOT_FOUND"


class ConfigError(TfdeployError):
    """deploy.yaml or a target's configuration is wrong."""

    code = "INVALID_ARGUMENT"


class PluginError(TfdeployError):
    """A plugin cannot be loaded, or two plugins clash."""

    code = "FAILED_PRECONDITION"


class DependencyError(TfdeployError):
    """An optional dependency is needed and not installed."""

    code = "FAILED_PRECONDITION"


class TargetError(TfdeployError):
    """A deploy target failed to deploy, answer or report."""

    code = "FAILED_PRECONDITION"


class TransientError(TargetError):
    """A target failed in a way that may pass: a refused connection, a timeout, a 5xx.

    Deploys, status and predictions retry it (like every error whose ``retryable`` is true)
    with backoff until their timeout.
    """

    code = "UNAVAILABLE"
    retryable = True


class UnsupportedError(TargetError):
    """The target does not implement that operation (for example ``rollback``)."""

    code = "UNIMPLEMENTED"


class ServerBusyError(TfdeployError):
    """A server's request queue is full; the client should retry later."""

    code = "UNAVAILABLE"
    retryable = True


class RequestTooLargeError(TfdeployError):
    """A request body is larger than the server accepts (HTTP 413)."""

    code = "RESOURCE_EXHAUSTED"

    @property
    def http_status(self) -> int:
        """413 Payload Too Large, which no canonical code maps to."""
        return 413


def from_http_status(status: int, message: str, *, hint: str | None = None) -> RemoteError:
    """The error for a remote HTTP answer with ``status`` (see :data:`HTTP_STATUSES`)."""
    code, retryable = HTTP_STATUSES.get(
        status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", False)
    )
    return RemoteError(message, hint=hint, code=code, retryable=retryable, status=status)


def from_grpc_status(code: str, message: str, *, hint: str | None = None) -> RemoteError:
    """The error for a gRPC call that ended with status ``code`` (a name such as ``NOT_FOUND``)."""
    known = code if code in CODES else "UNKNOWN"
    return RemoteError(message, hint=hint, code=known, retryable=CODES[known][1])


#: What a connection error says when nothing listens at the address, or the address does not
#: exist: known at once, and trying again a moment later will not change it.
_UNREACHABLE = (
    "connection refused",
    "name resolution",
    "dns resolution",
    "unknown host",
    "name or service not known",
    "nodename nor servname",
    "no route to host",
    "network is unreachable",
)


def from_connection_error(where: str, reason: object, *, timed_out: bool = False) -> RemoteError:
    """The error for a server at ``where`` that could not be reached (refused, unknown, silent).

    A refused connection or an unknown host is known at once and is not retried (a wrong
    address, a server that is down): its error is not ``retryable``. A timeout or a connection
    dropped half-way may pass, and is.
    """
    if timed_out:
        return RemoteError(
            f"{where} did not answer in time ({reason})",
            hint="check that the server is running and not overloaded, or raise the timeout",
            code="DEADLINE_EXCEEDED",
            retryable=True,
        )
    text = str(reason).lower()
    refused = isinstance(reason, ConnectionRefusedError) or "connection refused" in text
    if refused or any(sign in text for sign in _UNREACHABLE):
        what = "connection refused" if refused else str(reason)
        return RemoteError(
            f"cannot reach {where}: {what}",
            hint="check that the server is running and listening at that address",
            code="UNAVAILABLE",
            retryable=False,
        )
    return RemoteError(
        f"cannot reach {where}: {reason}",
        hint="check that the server is running and the address is right",
        code="UNAVAILABLE",
        retryable=True,
    )
