"""One target's connection to Google Cloud: credentials, clients, calls and operations.

Management calls go through the API's own (GAPIC) clients over REST, which return a
long-running operation at once; :meth:`Session.wait` polls it with a heartbeat and a deadline
(the high-level ``Endpoint.deploy`` waits forever). No client is retried blindly: a call whose
answer was lost may have happened, so the target looks before it creates anything again.
Nothing here touches ``aiplatform.init``, which is process-wide: each target has its own
endpoint, credentials and project.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tfdeploy.plugin import ConfigError, Progress, RemoteError, TargetError, add_secret
from tfdeploy_cloudml import sdk
from tfdeploy_cloudml.boundary import boundary
from tfdeploy_cloudml.config import CloudMLConfig

T = TypeVar("T")

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
#: Polls never wait longer than this, however long an operation takes.
MAX_POLL_INTERVAL = 30.0
#: Fields of a key file that are credentials (registered as secrets when the file is read).
_SECRET_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")


def load_credentials(config: CloudMLConfig) -> Any:
    """The credentials the config asks for: none, a key file, or Application Default."""
    if config.anonymous:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    if config.credentials_file:
        return _from_key_file(Path(config.credentials_file).expanduser())
    import google.auth

    with boundary("finding Google Cloud credentials", "Google Cloud"):
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    return credentials


def _from_key_file(path: Path) -> Any:
    """Credentials from a key file whose secret fields are registered before anything else."""
    from google.auth import exceptions as auth_exceptions

    where = f"credentials_file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{where}: cannot read it: {reason}") from None
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise ConfigError(
            f"{where} is not a JSON key file",
            hint="download a key for the service account (IAM > Service accounts > Keys)",
        ) from None
    for name in _SECRET_FIELDS:
        value = info.get(name)
        if isinstance(value, str):
            add_secret(value)
            for line in value.splitlines():
                if len(line) >= 16:
                    add_secret(line.strip())
    kind = info.get("type")
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[CLOUD_PLATFORM]
            )
        if kind == "authorized_user":
            from google.oauth2 import credentials as user_credentials

            return user_credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
                info, scopes=[CLOUD_PLATFORM]
            )
    except (ValueError, KeyError, auth_exceptions.GoogleAuthError) as exc:
        raise ConfigError(
            f"{where} is not a usable key ({type(exc).__name__})",
            hint="download a new key for the service account (IAM > Service accounts > Keys)",
        ) from None
    raise ConfigError(
        f"{where} holds credentials of type {str(kind)[:40]!r}",
        hint="give a service-account key (type service_account) or a gcloud user credentials "
        "file (type authorized_user)",
    )


class Session:
    """Clients for one target's project and region, and the boundary around every call."""

    def __init__(self, config: CloudMLConfig, progress: Callable[[], Progress]) -> None:
        self.config = config
        self._progress = progress
        self.parent = f"projects/{config.project}/locations/{config.region}"
        self.where = f"Vertex AI at {config.api_base_url}"
        self._credentials: Any = None
        self._models: Any = None
        self._endpoints: Any = None
        self._storage: Any = None

    # --- clients -------------------------------------------------------------------------------

    @property
    def credentials(self) -> Any:
        """The credentials, loaded on first use."""
        if self._credentials is None:
            self._credentials = load_credentials(self.config)
        return self._credentials

    def _client(self, name: str) -> Any:
        gapic = sdk.gapic()
        from google.api_core.client_options import ClientOptions

        options = ClientOptions(api_endpoint=self.config.client_endpoint)
        with boundary("connecting to Vertex AI", self.where):
            return getattr(gapic, name)(
                transport="rest", client_options=options, credentials=self.credentials
            )

    @property
    def models(self) -> Any:
        """``aiplatform_v1.ModelServiceClient``."""
        if self._models is None:
            self._models = self._client("ModelServiceClient")
        return self._models

    @property
    def endpoints(self) -> Any:
        """``aiplatform_v1.EndpointServiceClient``."""
        if self._endpoints is None:
            self._endpoints = self._client("EndpointServiceClient")
        return self._endpoints

    @property
    def storage(self) -> Any:
        """A Cloud Storage client (``STORAGE_EMULATOR_HOST`` points it at an emulator)."""
        if self._storage is None:
            with boundary("connecting to Cloud Storage", "Cloud Storage"):
                self._storage = sdk.storage().Client(
                    project=self.config.project, credentials=self.credentials
                )
        return self._storage

    def prediction_endpoint(self, endpoint_name: str) -> Any:
        """An ``aiplatform.Endpoint`` whose clients talk to this target's API endpoint.

        The SDK builds its clients from the process-wide ``aiplatform.init`` settings; these
        are replaced by clients made from this target's settings, so two targets (or the
        user's own code) never see each other's endpoint or credentials.
        """
        aiplatform = sdk.aiplatform()
        utils = sdk.aiplatform_utils()
        from google.api_core import gapic_v1
        from google.api_core.client_options import ClientOptions

        options = ClientOptions(api_endpoint=self.config.client_endpoint)
        info = gapic_v1.client_info.ClientInfo(user_agent="tfdeploy")  # type: ignore[no-untyped-call]
        with boundary("connecting to Vertex AI", self.where):
            endpoint = aiplatform.Endpoint(
                endpoint_name,
                project=self.config.project,
                location=self.config.region,
                credentials=self.credentials,
            )
            made = {
                "client_options": options,
                "client_info": info,
                "credentials": self.credentials,
                "transport": "rest",
            }
            endpoint.api_client = utils.EndpointClientWithOverride(**made)
            endpoint._prediction_client_value = utils.PredictionClientWithOverride(**made)
        return endpoint

    def close(self) -> None:
        """Close the clients' connections."""
        for client in (self._models, self._endpoints):
            if client is not None:
                client.transport.close()
        if self._storage is not None:
            self._storage.close()
        self._models = self._endpoints = self._storage = None

    # --- calls and operations ----------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """``fn(**kwargs, timeout=request_timeout)``, its exceptions translated."""
        with boundary(what, self.where):
            return fn(**kwargs, timeout=self.config.request_timeout)

    def listed(self, what: str, fn: Callable[..., Any], /, **kwargs: Any) -> list[Any]:
        """Every item of a list call, all pages fetched inside the boundary."""
        with boundary(what, self.where):
            return list(fn(**kwargs, timeout=self.config.request_timeout))

    def wait(self, operation: Any, what: str) -> Any:
        """Poll ``operation`` until it is done; return its response or raise its error.

        Polls at once, then after ``poll_interval`` seconds, growing 1.5× up to 30 s, with a
        heartbeat each time. A poll that fails in a way worth retrying is retried at the next
        poll (the operation goes on regardless); after ``operation_timeout`` seconds the wait
        ends with an error naming the operation, which Vertex AI finishes on its own.
        """
        from google.api_core import retry as retries

        no_retry = retries.Retry(predicate=lambda _exc: False)
        name = operation.operation.name
        start = time.monotonic()
        deadline = start + self.config.operation_timeout
        delay = self.config.poll_interval
        last_error: RemoteError | None = None
        progress = self._progress()
        while True:
            progress.heartbeat(time.monotonic() - start)
            try:
                with boundary(f"{what}: polling {name}", self.where):
                    if operation.done(retry=no_retry):
                        break
            except RemoteError as exc:
                if not exc.retryable:
                    raise
                last_error = exc
            left = deadline - time.monotonic()
            if left <= 0:
                since = f"; the last poll failed: {last_error.message}" if last_error else ""
                raise TargetError(
                    f"{what}: not finished after {self.config.operation_timeout:g} s{since}",
                    hint=f"Vertex AI goes on with operation {name}; run the same command again "
                    "once it is done (it picks up where this one stopped), or raise "
                    "operation_timeout",
                    code="DEADLINE_EXCEEDED",
                )
            time.sleep(min(delay, left))
            delay = min(max(delay * 1.5, self.config.poll_interval), MAX_POLL_INTERVAL)
        with boundary(what, self.where):
            return operation.result(timeout=0)
