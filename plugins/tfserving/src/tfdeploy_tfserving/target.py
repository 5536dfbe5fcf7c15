"""The ``tfserving`` target: versioned copies into a TF Serving model base path."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from tfdeploy.plugin import (
    Bundle,
    DeployResult,
    Plan,
    RemoteError,
    State,
    Status,
    Target,
    TargetConfig,
    TargetError,
    TfdeployError,
    VersionStatus,
    request_json,
)
from tfdeploy_tfserving import model_config
from tfdeploy_tfserving.client import GrpcClient
from tfdeploy_tfserving.storage import Store, open_store


class TFServingConfig(TargetConfig):
    """Settings of a ``tfserving`` target."""

    base_path: str = Field(
        description="Directory or gs://bucket/prefix holding one folder of versions per model."
    )
    grpc: str | None = Field(
        default=None,
        description="host:port of the server's gRPC API, used for predict, status and reloads.",
    )
    rest_url: str | None = Field(
        default=None, description="http://host:port of the server's REST API."
    )
    protocol: Literal["grpc", "rest"] = Field(
        default="grpc", description="How predict talks to the server."
    )
    model_config_file: str | None = Field(
        default=None,
        description="A model config file to keep (version labels and the versions to serve); "
        "the server is asked to reload it through ModelService.",
    )
    label: str = Field(
        default="stable",
        description="With model_config_file: the label a new version gets (stable, canary).",
    )
    wait_timeout: float = Field(
        default=300.0, gt=0, description="Seconds to wait for the server to serve a new version."
    )
    gcs_project: str | None = Field(
        default=None, description="Google Cloud project for gs:// base paths."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Sent as 'authorization: Bearer ...' to a server behind an authenticating proxy.",
    )

    @model_validator(mode="after")
    def _check(self) -> TFServingConfig:
        if self.protocol == "rest" and not self.rest_url:
            raise ValueError("protocol 'rest' needs rest_url")
        if self.rest_url and not self.rest_url.startswith(("http://", "https://")):
            raise ValueError("rest_url must start with http:// or https://")
        if self.rest_url and any(c.isspace() or ord(c) < 32 for c in self.rest_url):
            raise ValueError("rest_url must not contain spaces or control characters")
        return self


class TFServingTarget(Target[TFServingConfig]):
    """TensorFlow Serving: versioned, atomic copies into a model base path (local or gs://).

    What a deploy guarantees:

    - A version appears whole or not at all (staged aside, renamed in; on GCS,
      ``saved_model.pb`` copied last), and its number is never used again.
    - With a server to ask (``grpc`` or ``rest_url``), nothing becomes visible before that
      server has answered: a server that cannot be reached fails the deploy at once, with its
      address, and so does one that does not serve this model while the base path already holds
      versions of it (the wrong server). Then the deploy waits until the server serves the new
      version; if it fails to load it, or does not serve it within ``wait_timeout``, or the
      deploy is interrupted, the version is withdrawn before the error is raised.
    - With ``model_config_file``, versions serve only through the config (its version list and
      labels): the files are copied first, which no server serves, then the label moves to the
      new version and the server is asked to reload. A failed deploy moves the label back, so
      the previous version keeps serving for clients throughout, unless the new one loaded and
      the failure came after (a wait that ran out).
    - Without ``model_config_file``, TF Serving loads the highest version of a base path the
      moment it appears and takes traffic to it as soon as it is loaded; a version withdrawn
      after the server loaded it has answered requests until its withdrawal. The check before
      copying is what keeps a deploy that cannot confirm its version from getting there.
    - Without ``grpc`` or ``rest_url`` nothing can confirm anything: the deploy is done once
      the version is in place, and any server reading the base path serves it.

    A rollback serves an earlier version again and keeps the versions it replaces (without a
    config file they are set aside as ``.tfdeploy-rolledback-N``, which a server ignores), so
    ``rollback(to=N)`` serves them again; ``discard=True`` deletes them. Failed versions and
    superseded set-aside ones keep only their number (see :mod:`tfdeploy_tfserving.storage`).
    """

    Config = TFServingConfig

    def __init__(self, config: TFServingConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._store: Store | None = None
        self._grpc: GrpcClient | None = None

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The model's folder of versions."""
        if self._store is None:
            self._store = open_store(
                self.config.base_path, self.model_name, project=self.config.gcs_project
            )
        return self._store

    def _headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    @property
    def grpc(self) -> GrpcClient | None:
        """The gRPC client, when ``grpc`` is configured."""
        if self._grpc is None and self.config.grpc:
            self._grpc = GrpcClient(self.config.grpc, metadata=list(self._headers().items()))
        return self._grpc

    def _rest_model_url(self) -> str | None:
        if not self.config.rest_url:
            return None
        return f"{self.config.rest_url.rstrip('/')}/v1/models/{self.model_name}"

    def _labels(self) -> dict[str, int]:
        if not self.config.model_config_file:
            return {}
        text = self.store.read_text(self.config.model_config_file)
        return model_config.labels(
            model_config.parse(text, where=self.config.model_config_file), self.model_name
        )

    def _server_states(self) -> dict[int, tuple[str, str]] | None:
        """``{version: (state, error)}`` from the server, or ``None`` without a server."""
        try:
            if self.grpc is not None:
                rows = self.grpc.model_status(self.model_name)
                return {v: (s, e) for v, s, e in rows}
            url = self._rest_model_url()
            if url is None:
                return None
            body = request_json("GET", url, headers=self._headers(), timeout=30.0)
        except TfdeployError as exc:
            if exc.code == "NOT_FOUND":
                return {}
            raise
        out = {}
        for row in body.get("model_version_status", []):
            status = row.get("status") or {}
            state, error = str(row.get("state", "UNKNOWN")), status.get("error_message", "")
            out[int(row["version"])] = (state, error)
        return out

    # --- the contract -----------------------------------------------------------------------

    def status(self) -> Status:
        """What the base path holds and, with a server, what it serves."""
        stored = self.store.versions()
        labels = self._labels()
        by_version: dict[int, list[str]] = {}
        for label, v in labels.items():
            by_version.setdefault(v, []).append(label)
        detail = None
        server = self._server_states()  # a server that cannot be reached is an error
        versions = []
        aside = self.store.aside()
        for v in sorted(
            (set(stored) | set(server or {})) - (set(aside) - set(stored)), reverse=True
        ):
            state: State = "unknown"
            error = None
            if server is not None:
                raw, error = server.get(v, ("", ""))
                state = _STATES.get(raw, "absent" if v in stored else "unknown")
            manifest = stored.get(v)
            versions.append(
                VersionStatus(
                    version=str(v),
                    state=state,
                    digest=manifest.digest if manifest else None,
                    labels=tuple(sorted(by_version.get(v, []))),
                    detail=error or None,
                )
            )
        for v, manifest in sorted(aside.items(), reverse=True):
            versions.append(
                VersionStatus(
                    version=str(v),
                    state="absent",
                    digest=manifest.digest if manifest else None,
                    detail=f"set aside by a rollback; `tfdeploy rollback --to {v}` serves it again",
                )
            )
        current = self._current(stored, labels, server)
        url = self._rest_model_url() or (f"grpc://{self.config.grpc}" if self.config.grpc else None)
        if current is None:
            return Status(
                target=self.name,
                plugin=self.plugin,
                model=self.model_name,
                state="absent" if not stored else "pending",
                url=url,
                versions=tuple(versions),
                detail=detail or (None if stored else f"nothing deployed in {self.store.url}"),
            )
        row = next(r for r in versions if r.version == str(current))
        if server is None:
            state = "unknown"
            detail = detail or f"version {current} is in {self.store.url}; no server to ask"
        else:
            state = row.state
        return Status(
            target=self.name,
            plugin=self.plugin,
            model=self.model_name,
            state=state,
            version=str(current),
            digest=row.digest,
            url=url,
            versions=tuple(versions),
            detail=detail or row.detail,
        )

    def _current(
        self,
        stored: Mapping[int, Any],
        labels: Mapping[str, int],
        server: Mapping[int, tuple[str, str]] | None,
    ) -> int | None:
        if self.config.model_config_file and self.config.label in labels:
            return labels[self.config.label]
        if server:
            available = [v for v, (s, _) in server.items() if s == "AVAILABLE"]
            if available:
                return max(available)
        return max(stored) if stored else None

    def plan(self, bundle: Bundle) -> Plan:
        """Compare the bundle's digest with the version that serves."""
        plan = super().plan(bundle)
        if plan.action == "noop":
            return plan
        version = self._next_version(bundle.manifest.version)
        changes = [f"copy {bundle.manifest.size_bytes} bytes to {self.store.url}/{version}"]
        if self.config.model_config_file:
            changes.append(
                f"label {self.config.label!r} -> {version} in {self.config.model_config_file}"
            )
        return Plan(
            plan.target,
            plan.action,
            plan.current_version,
            plan.current_digest,
            plan.new_digest,
            tuple(changes),
        )

    def deploy(self, bundle: Bundle) -> DeployResult:
        """Copy the bundle as the next version, update labels, wait until it serves."""
        digest = bundle.manifest.digest
        stored = self.store.versions()
        labels = self._labels()
        current = self._current(stored, labels, None)
        if current is not None and (m := stored.get(current)) is not None and m.digest == digest:
            return DeployResult(
                status=self.status(),
                changed=False,
                message=f"version {current} already has {digest}",
            )
        self._confirm_server(stored)
        self.store.tidy()
        version = self._next_version(bundle.manifest.version)
        self.progress.step(f"copying version {version} to {self.store.url}")
        sent = self.store.put(version, bundle.model_dir, bundle.manifest, self.progress)
        try:
            if self.config.model_config_file:
                self._write_labels({**labels, self.config.label: version})
            self._wait_serving(version)
        except BaseException:
            self._undo(version, labels)
            raise
        return DeployResult(
            status=self.status(),
            changed=True,
            bytes_sent=sent,
            message=f"deployed version {version}",
        )

    def _confirm_server(self, stored: Mapping[int, Any]) -> None:
        """Before anything becomes visible: the server must answer, and know this model if the
        base path already holds versions of it (else it is not the server that reads them)."""
        if self.grpc is None and self.config.rest_url is None:
            return
        self.progress.step("asking the server what it serves")
        states = self._server_states() or {}
        if stored and not states and not self.config.model_config_file:
            where = self.config.grpc or self.config.rest_url
            raise TargetError(
                f"the server at {where} does not serve model {self.model_name!r}, although "
                f"{self.store.url} holds versions {sorted(stored)} of it; nothing was changed",
                hint="point grpc/rest_url at the server that reads this base path",
            )

    def _undo(self, version: int, labels: dict[str, int]) -> None:
        """Withdraw a version that did not come to serve, and put the labels back."""
        try:
            if self.config.model_config_file:
                self._write_labels(labels)
        finally:
            self.store.withdraw(version)
            self.progress.step(f"withdrew version {version}; the previous version keeps serving")

    def _next_version(self, requested: int) -> int:
        """The next free number, or ``requested`` (``--version``) when it is above every used one."""
        highest = self.store.highest_used()
        if requested > 1 and requested <= highest:
            raise TargetError(
                f"version {requested} is taken in {self.store.url} (highest used: {highest})",
                hint="leave --version out to take the next number, or give a higher one",
            )
        return max(highest + 1, requested)

    def _write_labels(self, labels: dict[str, int]) -> None:
        location = self.config.model_config_file
        assert location is not None
        config = model_config.parse(self.store.read_text(location), where=location)
        updated = model_config.set_model(config, self.model_name, self.store.url, labels)
        self.store.write_text(location, model_config.render(updated))
        if self.grpc is not None:
            self.progress.step("asking the server to reload its model config")
            self.grpc.reload_config(updated)

    def _wait_serving(self, version: int, *, replacing: Iterable[int] = ()) -> None:
        """Wait until the server serves ``version`` and none of ``replacing`` any more."""
        if self.grpc is None and self.config.rest_url is None:
            return
        self.progress.step(f"waiting for the server to serve version {version}")
        start = time.monotonic()
        deadline = start + self.config.wait_timeout
        delay = 0.1
        last_error: TfdeployError | None = None
        while True:
            self.progress.heartbeat(time.monotonic() - start)
            try:
                states = self._server_states() or {}
                last_error = None
            except TfdeployError as exc:
                if not isinstance(exc, RemoteError):
                    raise
                states, last_error = {}, exc  # the server may be restarting: keep asking
            state, error = states.get(version, ("", ""))
            left = [v for v in replacing if states.get(v, ("", ""))[0] == "AVAILABLE"]
            if state == "AVAILABLE" and not left:
                return
            if state == "END" and error:
                raise TargetError(f"the server failed to load version {version}: {error}")
            if time.monotonic() > deadline:
                last = f" (last answer: {last_error.message})" if last_error else ""
                raise TargetError(
                    f"the server did not serve version {version} within "
                    f"{self.config.wait_timeout:g} s{last}",
                    hint="check the server's model base path and logs, or raise wait_timeout",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Predict through gRPC (or REST with ``protocol: rest``), at the label if one is kept."""
        label = self.config.label if self.config.model_config_file else None
        if self.config.protocol == "rest":
            url = self._rest_model_url()
            assert url is not None
            target = f"{url}/labels/{label}:predict" if label else f"{url}:predict"
            answer: dict[str, Any] = request_json(
                "POST", target, dict(request), headers=self._headers(), timeout=60.0
            )
            return answer
        if self.grpc is None:
            raise TargetError(
                f"target {self.name!r} has no server to predict with",
                hint="set grpc: host:port (or rest_url and protocol: rest) in its config",
            )
        return self.grpc.predict(self.model_name, request, label=label)

    def rollback(self, to: str | None = None, *, discard: bool = False) -> Status:
        """Serve an earlier version: the one before the current, a version number, or a label's.

        The versions it replaces are kept (set aside, or, with a config file, left unlabelled)
        so that ``rollback(to=N)`` serves them again, unless ``discard``. A version set aside
        by an earlier rollback can be ``to`` (a roll forward).
        """
        stored = self.store.versions()
        aside = self.store.aside()
        labels = self._labels()
        current = self._current(stored, labels, None)
        if current is None:
            raise TargetError(f"nothing is deployed in {self.store.url}, so nothing to roll back")
        if to is None:
            earlier = [v for v in stored if v < current]
            if not earlier:
                raise TargetError(f"version {current} is the only version in {self.store.url}")
            goal = max(earlier)
        elif to.isdigit():
            goal = int(to)
        elif to in labels:
            goal = labels[to]
        else:
            raise TargetError(
                f"no version or label {to!r} (versions: {sorted({*stored, *aside})}, "
                f"labels: {sorted(labels)})"
            )
        if goal not in stored and goal not in aside:
            raise TargetError(
                f"version {goal} is not in {self.store.url} (versions: {sorted({*stored, *aside})})",
                hint="a version discarded by a rollback, or superseded by a newer deploy after "
                "one, cannot be served again",
            )
        self._confirm_server(stored)
        self.store.tidy()
        newer = sorted((v for v in stored if v > goal), reverse=True)
        verb = "deleting" if discard else "keeping"
        self.progress.step(
            f"rolling back from version {current} to {goal}"
            + (f", {verb} {', '.join(map(str, newer))}" if newer else "")
        )
        if goal in aside:
            self.store.restore(goal)
        if self.config.model_config_file:
            moved = {**labels, self.config.label: goal}
            self._write_labels(moved)
            if discard:  # but never a version another label still serves
                for v in newer:
                    if v not in moved.values():
                        self.store.withdraw(v)
        else:
            for v in newer:
                if discard:
                    self.store.withdraw(v)
                else:
                    self.store.set_aside(v)
        self._wait_serving(goal, replacing=() if self.config.model_config_file else newer)
        return self.status()

    def undeploy(self) -> Status:
        """Remove the model from the config file (if any) and delete its versions."""
        location = self.config.model_config_file
        if location:
            config = model_config.parse(self.store.read_text(location), where=location)
            updated = model_config.remove_model(config, self.model_name)
            self.store.write_text(location, model_config.render(updated))
            if self.grpc is not None:
                self.grpc.reload_config(updated)
        self.store.remove_all()
        return self.status()

    def close(self) -> None:
        """Close the gRPC channel."""
        if self._grpc is not None:
            self._grpc.close()
            self._grpc = None


_STATES: dict[str, State] = {
    "AVAILABLE": "serving",
    "LOADING": "pending",
    "START": "pending",
    "UNLOADING": "pending",
    "END": "absent",
    "UNKNOWN": "unknown",
}
