"""The boundary with rsconnect-python: Connect's API calls a ``connect`` target makes.

Every call goes through rsconnect-python's own client (:class:`rsconnect.api.RSConnectClient`,
``Authorization: Key ...``), and every failure leaves here as a tfdeploy error made by
:func:`~tfdeploy.plugin.from_http_status` or :func:`~tfdeploy.plugin.from_connection_error`
(so ``retryable`` says the truth), raised ``from`` the library's exception. A refused key is
a clear error with a hint on creating one. Messages come from the library's message text only,
never from its headers, so the key never reaches one.

rsconnect-python's deploy helpers (``RSConnectExecutor``, ``client.deploy``) are not used: they
read and write deployment records on disk and create a new content item whenever none is named.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol, TypeVar, cast

from rsconnect.api import RSConnectClient, RSConnectServer
from rsconnect.certificates import read_certificate_file
from rsconnect.exception import RSConnectException
from rsconnect.http_support import HTTPResponse

from tfdeploy.plugin import (
    ConfigError,
    TargetError,
    TfdeployError,
    from_connection_error,
    from_http_status,
)
from tfdeploy_connect.config import API_KEY_HINT, ConnectConfig

T = TypeVar("T")
Content = dict[str, Any]
Task = dict[str, Any]


class Readable(Protocol):
    """A stream of bytes to upload."""

    def read(self, size: int = -1) -> bytes:
        """The next ``size`` bytes (all that is left with -1); empty at the end."""
        ...


def certificate(config: ConnectConfig) -> str | bytes | None:
    """The CA certificate named by ``ca_bundle``, read as rsconnect-python reads it."""
    if not config.ca_bundle:
        return None
    try:
        return read_certificate_file(config.ca_bundle)
    except RSConnectException as exc:
        raise ConfigError(
            f"ca_bundle: {exc.message}", hint="point ca_bundle at a .pem, .crt or .der file"
        ) from exc


def ssl_context(config: ConnectConfig) -> ssl.SSLContext | None:
    """The TLS settings of requests to content URLs: the same as for the API."""
    if config.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    ca = certificate(config)
    if ca is None:
        return None
    return ssl.create_default_context(cadata=ca)


def refused_key(server: str, exc: BaseException | None = None) -> TfdeployError:
    """The error for a 401: the API key was refused."""
    return from_http_status(
        401,
        f"the API key was refused by {server} (401: it is unknown, expired or revoked)",
        hint=API_KEY_HINT,
    )


def translate(server: str, doing: str, exc: RSConnectException) -> TfdeployError:
    """The tfdeploy error for what rsconnect-python raised while ``doing`` something."""
    if exc.status == 401:
        return refused_key(server, exc)
    if exc.status == 403:
        return from_http_status(
            403,
            f"Connect refused to let this API key's user {doing} (403): {exc.message}",
            hint="publishing needs a publisher's or administrator's key, and an existing "
            "content item needs its owner or a collaborator",
        )
    if exc.status is not None:
        return from_http_status(exc.status, f"Connect failed to {doing}: {exc.message}")
    cause = exc.cause
    if isinstance(cause, (ssl.SSLError, ssl.CertificateError)):
        return TargetError(
            f"cannot reach {server}: its TLS certificate was not accepted ({cause})",
            hint="set ca_bundle to the file of the certificate authority that signed it "
            "(or insecure: true, which checks nothing)",
        )
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return from_connection_error(server, f"no answer while trying to {doing}", timed_out=True)
    if isinstance(cause, ConnectionRefusedError):
        return from_connection_error(server, "connection refused")
    if isinstance(cause, socket.gaierror):
        return from_connection_error(server, f"unknown host ({cause.strerror})")
    if cause is not None:
        return from_connection_error(server, f"{type(cause).__name__} while trying to {doing}")
    return TargetError(f"Connect failed to {doing}: {exc.message}")


class ConnectAPI:
    """Connect's content, bundle and task API for one target, through rsconnect-python."""

    def __init__(self, config: ConnectConfig) -> None:
        self.server = config.server
        self._timeout = config.request_timeout
        self._remote = RSConnectServer(
            config.server,
            config.api_key.get_secret_value(),
            insecure=config.insecure,
            ca_data=certificate(config),
        )
        self._user: str | None = None

    def __repr__(self) -> str:
        return f"<ConnectAPI {self.server}>"

    def _call(self, doing: str, call: Callable[[RSConnectClient], T]) -> T:
        client = RSConnectClient(self._remote)
        client.request_timeout = self._timeout
        try:
            return call(client)
        except RSConnectException as exc:
            raise translate(self.server, doing, exc) from exc

    def _checked(self, client: RSConnectClient, response: Any) -> Any:
        return self._remote.handle_bad_response(response)

    # --- content -----------------------------------------------------------------------------

    def find_content(self, name: str) -> Content | None:
        """The content item called ``name`` that this key's user owns, if any."""

        def find(client: RSConnectClient) -> Content | None:
            # Names are unique per owner, and an administrator's key lists every owner's.
            owner = self._user_guid(client)
            query = {"name": name, **({"owner_guid": owner} if owner else {})}
            found = [dict(c) for c in client.content_list(query)]
            return found[0] if found else None

        return self._call(f"look up content {name!r}", find)

    def _user_guid(self, client: RSConnectClient) -> str | None:
        """The key's user (the first call, so a refused key is known at once)."""
        if self._user is None:
            try:
                self._user = str(client.me()["guid"])
            except RSConnectException as exc:
                if exc.status != 403:  # a service principal's key has no user record
                    raise
                self._user = ""
        return self._user or None

    def create_content(self, fields: Mapping[str, Any]) -> Content:
        """A new content item with these fields (``name``, ``title``, ``description``, ...)."""
        name = fields.get("name")
        return self._call(
            f"create content {name!r}",
            lambda c: dict(self._checked(c, c.post("v1/content", body=dict(fields)))),
        )

    def get_content(self, guid: str) -> Content:
        """The content item ``guid``."""
        return self._call("read the content", lambda c: dict(c.content_get(guid)))

    def update_content(self, guid: str, fields: Mapping[str, Any]) -> Content:
        """Change fields of content ``guid``."""
        return self._call(
            "update the content", lambda c: dict(c.content_update(guid, dict(fields)))
        )

    def delete_content(self, guid: str) -> None:
        """Delete content ``guid`` with its bundles."""

        def delete(client: RSConnectClient) -> None:
            response = client.delete(f"v1/content/{guid}", decode_response=False)
            self._remote.handle_bad_response(cast(HTTPResponse, response), is_httpresponse=True)

        self._call("delete the content", delete)

    def set_environment(self, guid: str, variables: Mapping[str, str]) -> None:
        """Set the content's environment variables (others are left as they are)."""
        pairs = sorted(variables.items())
        self._call(
            "set the content's environment variables",
            lambda c: self._checked(c, c.add_environment_vars(guid, pairs)),
        )

    # --- bundles and tasks --------------------------------------------------------------------

    def bundles(self, guid: str) -> list[dict[str, Any]]:
        """The content's bundles, newest first."""
        return self._call(
            "list the content's bundles",
            lambda c: [dict(b) for b in self._checked(c, c.get(f"v1/content/{guid}/bundles"))],
        )

    def upload_bundle(self, guid: str, archive: Readable) -> dict[str, Any]:
        """Upload a bundle archive (streamed, with chunked transfer encoding)."""
        stream = cast(IO[bytes], archive)  # http.client only reads it
        return self._call("upload the bundle", lambda c: dict(c.upload_bundle(guid, stream)))

    def delete_bundle(self, guid: str, bundle_id: str) -> None:
        """Delete a bundle that is not active."""

        def delete(client: RSConnectClient) -> None:
            path = f"v1/content/{guid}/bundles/{bundle_id}"
            response = client.delete(path, decode_response=False)
            self._remote.handle_bad_response(cast(HTTPResponse, response), is_httpresponse=True)

        self._call(f"delete bundle {bundle_id}", delete)

    def deploy(self, guid: str, bundle_id: str) -> str:
        """Start deploying bundle ``bundle_id``; the task's id."""
        return self._call(
            f"deploy bundle {bundle_id}",
            lambda c: str(c.content_deploy(guid, bundle_id)["task_id"]),
        )

    def task(self, task_id: str, first: int, wait: int) -> Task:
        """The task's state and its output lines from ``first``, waiting up to ``wait`` s."""
        return self._call("read the deploy task", lambda c: dict(c.task_get(task_id, first, wait)))
