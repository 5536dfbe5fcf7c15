"""Errors raised by tfdeploy.

Every error carries a one-line message saying what is wrong and, where there is one, a
``hint`` saying what to do about it. Each class has a canonical status ``code`` (the names
TensorFlow Serving and gRPC use); :func:`http_status` maps a code to an HTTP status, in this one
place, for every server and client in the project.

Hierarchy::

    TfdeployError
    ├── ModelError                  the SavedModel on disk
    │   ├── ModelNotFoundError      no such path, or no SavedModel there        NOT_FOUND
    │   └── InvalidModelError       corrupt saved_model.pb, missing tag, ...    FAILED_PRECONDITION
    ├── BundleError                 an unsafe or malformed bundle archive       INVALID_ARGUMENT
    ├── PredictionError
    │   ├── InvalidInputError       a request that does not fit the signature   INVALID_ARGUMENT
    │   ├── SignatureNotFoundError  no such signature                           INVALID_ARGUMENT
    │   └── RemoteError             a prediction server answered with an error  (its own code)
    ├── ServableNotFoundError       no such model, version or label on a server NOT_FOUND
    ├── ConfigError                 deploy.yaml or a target's configuration     INVALID_ARGUMENT
    ├── PluginError                 a plugin that cannot be loaded or clashes   FAILED_PRECONDITION
    ├── DependencyError             an optional package is not installed        FAILED_PRECONDITION
    ├── ServerBusyError             a server's request queue is full            UNAVAILABLE
    ├── RequestTooLargeError        a request body over the server's limit      HTTP 413
    └── TargetError                 a deploy target failed                      UNAVAILABLE
        ├── TransientError          a failure worth retrying (network, 5xx)     UNAVAILABLE
        └── UnsupportedError        the target cannot do that operation         UNIMPLEMENTED

Lower-level exceptions (``OSError``, TensorFlow's, protobuf's, HTTP clients') are translated at
the boundary with ``raise ... from exc`` so the original stays reachable for debugging.
"""

from __future__ import annotations

#: TensorFlow Serving's mapping of canonical error codes to HTTP statuses.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
}


def http_status(code: str) -> int:
    """Return the HTTP status for a canonical error ``code`` (500 for anything unknown)."""
    return HTTP_STATUS_BY_CODE.get(code, 500)


def code_for_http_status(status: int) -> str:
    """Return the canonical code that best describes an HTTP ``status`` from a remote server."""
    for code, value in HTTP_STATUS_BY_CODE.items():
        if value == status:
            return code
    return "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"


class TfdeployError(Exception):
    """Base class of every error tfdeploy raises on purpose.

    ``str(err)`` is the message alone; :attr:`hint` says what to do, if anything.
    """

    code: str = "INTERNAL"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def http_status(self) -> int:
        """The HTTP status a server answers this error with."""
        return http_status(self.code)

    def describe(self) -> str:
        """The message followed by the hint, as one line for a terminal."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


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


class RemoteError(PredictionError):
    """A remote prediction server answered with an error."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code_for_http_status(status)


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

    code = "UNAVAILABLE"


class TransientError(TargetError):
    """A target failed in a way that may pass: a refused connection, a timeout, a 5xx.

    Deploys, status and predictions retry these with backoff until their timeout.
    """


class UnsupportedError(TargetError):
    """The target does not implement that operation (for example ``rollback``)."""

    code = "UNIMPLEMENTED"


class ServerBusyError(TfdeployError):
    """A server's request queue is full; the client should retry later."""

    code = "UNAVAILABLE"


class RequestTooLargeError(TfdeployError):
    """A request body is larger than the server accepts (HTTP 413)."""

    code = "RESOURCE_EXHAUSTED"

    @property
    def http_status(self) -> int:
        """413 Payload Too Large, which no canonical code maps to."""
        return 413
