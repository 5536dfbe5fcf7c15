"""The ``connect`` target: a SavedModel published as a content item on Posit Connect.

One content item per model (its ``name``); one bundle per model and settings, uploaded once.
A deploy finds the content (or creates it), uploads the bundle unless Connect already holds the
same one, starts Connect's deploy task and streams its log until it ends. Connect switches the
content to the new bundle only when the task succeeds, so a failed deploy leaves the previous
bundle serving; the bundle of a failed task is deleted again. What tfdeploy needs to remember
(each bundle's model digest, the last task) lives in the content's description
(:mod:`tfdeploy_connect.record`), so nothing is kept on this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from tfdeploy.plugin import (
    DEFAULT_SIGNATURE,
    Bundle,
    ConfigError,
    DeployResult,
    Plan,
    Progress,
    RemoteError,
    State,
    Status,
    Target,
    TargetError,
    TfdeployError,
    VersionStatus,
    add_secret,
    request_json,
)
from tfdeploy_connect.bundles import BuildPlan, build_bundle, plan_bundle
from tfdeploy_connect.config import CONTENT_NAME, ConnectConfig
from tfdeploy_connect.record import BundleRecord, Record

if TYPE_CHECKING:
    from tfdeploy_connect.client import ConnectAPI

#: Seconds each poll of a deploy task may wait on Connect for the task to end (Connect: 0-20).
POLL_WAIT = 1


@dataclass
class _State:
    """A content item as a deploy sees it: the item, tfdeploy's record and the bundles."""

    content: dict[str, Any]
    record: Record
    bundles: list[dict[str, Any]]
    ours: bool
    intro: str
    ids: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = {str(b["id"]) for b in self.bundles}

    @property
    def guid(self) -> str:
        """The content's guid."""
        return str(self.content["guid"])

    @property
    def active(self) -> str | None:
        """The id of the bundle that serves, if any."""
        bundle_id = self.content.get("bundle_id")
        return str(bundle_id) if bundle_id is not None else None

    def build_of(self, bundle_id: str | None) -> str | None:
        """The build fingerprint tfdeploy recorded for a bundle."""
        entry = self.record.bundles.get(bundle_id or "")
        return entry.build if entry and bundle_id in self.ids else None

    def digest_of(self, bundle_id: str | None) -> str | None:
        """The model digest tfdeploy recorded for a bundle."""
        entry = self.record.bundles.get(bundle_id or "")
        return entry.digest if entry else None


@dataclass(frozen=True)
class _Changes:
    """What a deploy of a build changes on a content item (``plan`` says it, ``deploy`` does it)."""

    settings: dict[str, str]
    environment: str | None
    """The fingerprint of the variables to set, when they differ from the recorded one."""
    serving: bool
    """Whether the active bundle is this build already."""
    reuse: str | None
    """A bundle of this build that Connect holds (deployed again without an upload)."""

    @property
    def nothing(self) -> bool:
        """Whether a deploy would leave everything as it is."""
        return self.serving and self.environment is None and not self.settings


class _UploadReader:
    """The archive as a stream for the upload, reporting each block sent."""

    mode = "rb"

    def __init__(self, stream: IO[bytes], total: int, progress: Progress) -> None:
        self._stream = stream
        self._total = total
        self._done = 0
        self._progress = progress

    def __repr__(self) -> str:
        return f"<bundle archive, {self._total} bytes>"

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._done += len(data)
            self._progress.advance(self._done, self._total)
        return data


class ConnectTarget(Target[ConnectConfig]):
    """Posit Connect: the model as a content item, served by tfdeploy's app or by Connect's TF.

    ``mode: app`` (the default) publishes a FastAPI bundle that runs tfdeploy's own REST app
    over the SavedModel, so the content answers every route of ``tfdeploy serve``;
    ``mode: tensorflow`` publishes Connect's native TensorFlow content (Connect 2024.05+,
    deprecated by Posit).
    """

    Config = ConnectConfig

    def __init__(self, config: ConnectConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        add_secret(config.api_key.get_secret_value())
        self._api: ConnectAPI | None = None
        self._content_url: str | None = None
        self._ssl: ssl.SSLContext | None = None

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def api(self) -> ConnectAPI:
        """Connect's API, through rsconnect-python (imported on first use)."""
        if self._api is None:
            from tfdeploy_connect.client import ConnectAPI

            self._api = ConnectAPI(self.config)
        return self._api

    @property
    def content_name(self) -> str:
        """The content's name on Connect: ``name``, or the model's name."""
        name = self.config.name or self.model_name
        if not CONTENT_NAME.fullmatch(name):
            raise ConfigError(
                f"{name!r} cannot be a Connect content name (3 to 64 letters, digits, '.', "
                "'_' or '-')",
                hint="set name: in the target's settings",
            )
        return name

    @property
    def _where(self) -> str:
        return f"content {self.content_name!r} on {self.config.server}"

    def _intro(self) -> str:
        return (
            f"TensorFlow model {self.model_name!r}, published by tfdeploy (mode "
            f"{self.config.mode}). tfdeploy keeps the line below up to date: leave it as it is."
        )

    def _state(self, *, create_for: BuildPlan | None = None) -> _State | None:
        """The content item and what tfdeploy recorded about it; with ``create_for``, it is
        created if missing, and refused if it is not tfdeploy's or serves another app mode."""
        content = self.api.find_content(self.content_name)
        if content is None:
            if create_for is None:
                return None
            self.progress.step(f"creating {self._where}")
            fields: dict[str, Any] = {
                "name": self.content_name,
                "title": self.config.title or self.model_name,
                "description": Record().render(self._intro()),
            }
            if self.config.access_type:
                fields["access_type"] = self.config.access_type
            content = self.api.create_content(fields)
        record = Record.parse(content.get("description"))
        bundles = self.api.bundles(str(content["guid"]))
        ours = record is not None or (content.get("bundle_id") is None and not bundles)
        intro = "\n".join(
            line
            for line in (content.get("description") or "").splitlines()
            if not line.startswith("tfdeploy-record: ")
        ).strip()
        state = _State(content, record or Record(), bundles, ours, intro or self._intro())
        if create_for is not None:
            self._check_takeover(state, create_for.app_mode)
        return state

    def _check_takeover(self, state: _State, app_mode: str) -> None:
        if not state.ours:
            raise TargetError(
                f"{self._where} exists and was not published by tfdeploy",
                hint="give this target another name: (or delete that content in Connect)",
            )
        current = state.content.get("app_mode") or "unknown"
        if current not in ("unknown", app_mode):
            raise TargetError(
                f"{self._where} is {current} content, and mode {self.config.mode} publishes "
                f"{app_mode}; Connect cannot change a content's app mode",
                hint="give this target another name:, or undeploy the content first",
            )

    def _save(self, state: _State) -> None:
        """Write the record into the content's description."""
        state.record.keep_only(state.ids, state.active)
        description = state.record.render(state.intro)
        state.content = self.api.update_content(state.guid, {"description": description})

    def _environment_fingerprint(self) -> str | None:
        """A fingerprint of the environment variables, keyed with the API key: values can be
        told apart without being readable from the description."""
        if not self.config.environment:
            return None
        values = sorted((k, v.get_secret_value()) for k, v in self.config.environment.items())
        key = self.config.api_key.get_secret_value().encode()
        return hmac.new(key, json.dumps(values).encode(), hashlib.sha256).hexdigest()[:32]

    def _settings_changes(self, content: Mapping[str, Any]) -> dict[str, str]:
        """Content settings the config states and the content does not have."""
        changes = {}
        if self.config.title is not None and content.get("title") != self.config.title:
            changes["title"] = self.config.title
        if self.config.access_type and content.get("access_type") != self.config.access_type:
            changes["access_type"] = self.config.access_type
        return changes

    # --- deploy -----------------------------------------------------------------------------

    def _changes(self, state: _State, build: BuildPlan) -> _Changes:
        fingerprint = self._environment_fingerprint()
        reuse = None
        for b in state.bundles:  # newest first
            if state.build_of(str(b["id"])) == build.fingerprint:
                reuse = str(b["id"])
                break
        return _Changes(
            settings=self._settings_changes(state.content),
            environment=fingerprint if fingerprint != state.record.environment else None,
            serving=state.active is not None and state.build_of(state.active) == build.fingerprint,
            reuse=reuse,
        )

    def plan(self, bundle: Bundle) -> Plan:
        """What a deploy would change: content, settings, environment, the bundle to serve."""
        build = plan_bundle(
            bundle, mode=self.config.mode, model_name=self.model_name, python=self.config.python
        )
        digest = bundle.manifest.digest
        state = self._state()
        if state is not None:
            self._check_takeover(state, build.app_mode)
        upload = f"upload a {build.mode}-mode bundle of {digest} and deploy it"
        if state is None:
            return Plan(self.name, "create", None, None, digest, (f"create {self._where}", upload))
        changes = self._changes(state, build)
        described = [f"{k}: {state.content.get(k)!r} -> {v!r}" for k, v in changes.settings.items()]
        if changes.environment is not None:
            names = ", ".join(sorted(self.config.environment))
            described.append(f"set environment variables {names}")
        if changes.reuse is not None and not changes.serving:
            described.append(
                f"deploy bundle {changes.reuse} again (Connect holds it already: nothing to upload)"
            )
        elif not changes.serving:
            described.append(upload)
        elif changes.environment is not None:
            described.append(f"deploy bundle {state.active} again, so the content sees them")
        return Plan(
            self.name,
            "create" if state.active is None else "noop" if changes.nothing else "update",
            state.active,
            state.digest_of(state.active),
            digest,
            tuple(described),
        )

    def deploy(self, bundle: Bundle) -> DeployResult:
        """Publish ``bundle``: upload it (unless Connect holds it), deploy it, wait for the task."""
        build = plan_bundle(
            bundle, mode=self.config.mode, model_name=self.model_name, python=self.config.python
        )
        digest = bundle.manifest.digest
        state = self._state(create_for=build)
        assert state is not None
        changes = self._changes(state, build)
        if changes.settings:
            self.progress.step(f"setting {', '.join(changes.settings)} of {self._where}")
            state.content = self.api.update_content(state.guid, changes.settings)
        if changes.serving and changes.environment is None:
            return DeployResult(
                status=self._status_of(state),
                changed=bool(changes.settings),
                message=f"bundle {state.active} already serves {digest}",
            )
        if changes.environment is not None:
            names = ", ".join(sorted(self.config.environment))
            self.progress.step(f"setting environment variables {names}")
            self.api.set_environment(
                state.guid, {k: v.get_secret_value() for k, v in self.config.environment.items()}
            )
        bundle_id, sent = changes.reuse, 0
        if bundle_id is None:
            bundle_id, sent = self._upload(state, build, bundle)
        else:
            self.progress.step(f"Connect holds this bundle already (bundle {bundle_id})")
        previous = state.active
        self.progress.step(f"deploying bundle {bundle_id}")
        task_id = self.api.deploy(state.guid, bundle_id)
        state.record.task = task_id
        self._save(state)
        task = self._wait(task_id, state)
        if task.get("code") != 0:
            if changes.reuse is None:  # this deploy uploaded it, and it never served
                self._withdraw(state, bundle_id)
            raise self._task_failed(task, previous, state)
        if changes.environment is not None:
            state.record.environment = changes.environment
            self._save(state)
        state.content = self.api.get_content(state.guid)
        return DeployResult(
            status=self._status_of(state, task),
            changed=True,
            bytes_sent=sent,
            message=f"bundle {bundle_id} serves {digest}",
        )

    def _upload(self, state: _State, build: BuildPlan, bundle: Bundle) -> tuple[str, int]:
        """Build the archive, upload it, and record its digest; the bundle's id and size."""
        self.progress.step(f"building the {build.mode}-mode bundle")
        with tempfile.TemporaryDirectory(prefix="tfdeploy-connect-") as tmp:
            built = build_bundle(build, bundle.model_dir, Path(tmp) / "bundle.tar.gz")
            self.progress.step(f"uploading the bundle ({built.size} bytes)")
            with built.path.open("rb") as stream:
                answer = self.api.upload_bundle(
                    state.guid, _UploadReader(stream, built.size, self.progress)
                )
        bundle_id = str(answer["id"])
        state.bundles.insert(0, answer)
        state.ids.add(bundle_id)
        state.record.bundles[bundle_id] = BundleRecord(build.digest, build.fingerprint)
        self._save(state)
        return bundle_id, built.size

    def _wait(self, task_id: str, state: _State) -> dict[str, Any]:
        """Poll the task until it ends, streaming its output; raises after ``wait_timeout``."""
        self.progress.step(f"waiting for Connect's deploy task {task_id}")
        start = time.monotonic()
        deadline = start + self.config.wait_timeout
        first = 0
        while True:
            now = time.monotonic()
            self.progress.heartbeat(now - start)
            if now >= deadline:
                raise TargetError(
                    f"Connect's deploy task {task_id} did not end within "
                    f"{self.config.wait_timeout:g} s",
                    hint=f"it may still be running (see {self._logs_url(state)}); the "
                    f"previous bundle serves until it succeeds; run deploy again to finish "
                    "the job, or raise wait_timeout",
                    code="DEADLINE_EXCEEDED",
                )
            wait = int(min(POLL_WAIT, deadline - now))
            try:
                task = self.api.task(task_id, first, wait)
            except TfdeployError as exc:
                if not exc.retryable:
                    raise
                self.progress.step(f"{exc.message}; asking again")
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            for line in task.get("output") or []:
                self.progress.log(str(line))
            first = int(task.get("last") or first)
            if task.get("finished"):
                return task
            if wait == 0:  # the last second before the deadline: Connect answered at once
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _withdraw(self, state: _State, bundle_id: str) -> None:
        """Delete the bundle of a failed deploy (it never served) and forget it."""
        try:
            self.api.delete_bundle(state.guid, bundle_id)
        except TfdeployError as exc:
            self.progress.step(f"could not delete bundle {bundle_id}: {exc.message}")
            return
        state.bundles = [b for b in state.bundles if str(b["id"]) != bundle_id]
        state.ids.discard(bundle_id)
        state.record.bundles.pop(bundle_id, None)
        self._save(state)

    def _task_failed(
        self, task: Mapping[str, Any], previous: str | None, state: _State
    ) -> TargetError:
        serving = f"bundle {previous} keeps serving" if previous else "nothing serves yet"
        hint = f"{serving}; the task's log is above and at {self._logs_url(state)}"
        if self.config.mode == "app":
            from tfdeploy_connect.requirements import DISTRIBUTION, installed_version, local_source

            source = local_source()
            if source:
                hint += (
                    f"; note that {DISTRIBUTION} {installed_version(DISTRIBUTION)} is installed "
                    f"here from {source}, and Connect installs that version from its package "
                    "index"
                )
        return TargetError(
            f"Connect's deploy task {task.get('id', '')} failed (code {task.get('code')}): "
            f"{task.get('error') or 'no error text'}",
            hint=hint,
        )

    @staticmethod
    def _logs_url(state: _State) -> str:
        return f"{str(state.content.get('dashboard_url') or '').rstrip('/')}/logs"

    # --- status, predict, rollback, undeploy -------------------------------------------------

    def status(self) -> Status:
        """The content, its active bundle and that bundle's digest, the last task, the URL."""
        state = self._state()
        if state is None:
            return Status(
                self.name, self.plugin, self.model_name, "absent", detail=f"no {self._where}"
            )
        return self._status_of(state)

    def _status_of(self, state: _State, task: Mapping[str, Any] | None = None) -> Status:
        if task is None and state.record.task:
            task = self._last_task(state.record.task)
        running = task is not None and not task.get("finished")
        failed = task is not None and task.get("finished") and task.get("code") != 0
        active = state.active
        st: State
        if active is None:
            st = "pending" if running else "failed" if failed else "absent"
        else:
            st = "pending" if running else "serving"
        versions = tuple(
            VersionStatus(
                version=str(b["id"]),
                state="serving" if str(b["id"]) == active else "absent",
                digest=state.digest_of(str(b["id"])),
                labels=("active",) if str(b["id"]) == active else (),
                detail=f"{b.get('size')} bytes, uploaded {b.get('created_time')}",
            )
            for b in state.bundles
        )
        parts = [
            f"content {state.content.get('name')} ({state.guid})",
            f"dashboard {state.content.get('dashboard_url')}",
        ]
        if not state.ours:
            parts.append("not published by tfdeploy")
        if task is not None:
            parts.append(f"last task {self._describe_task(task)}")
        return Status(
            target=self.name,
            plugin=self.plugin,
            model=self.model_name,
            state=st,
            version=active,
            digest=state.digest_of(active),
            url=str(state.content.get("content_url") or "") or None,
            versions=versions,
            detail="; ".join(parts),
        )

    def _last_task(self, task_id: str) -> dict[str, Any] | None:
        try:
            return self.api.task(task_id, 0, 0)
        except TfdeployError as exc:
            if exc.code == "NOT_FOUND":
                return {"id": task_id, "finished": True, "code": None, "gone": True}
            raise

    @staticmethod
    def _describe_task(task: Mapping[str, Any]) -> str:
        if task.get("gone"):
            return f"{task.get('id')}: no longer on the server"
        if not task.get("finished"):
            return f"{task.get('id')}: running"
        if task.get("code") == 0:
            return f"{task.get('id')}: succeeded"
        return f"{task.get('id')}: failed (code {task.get('code')}): {task.get('error')}"

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Predict through the content URL: in mode app, tfdeploy's app's TF Serving route
        (``v1/models/<name>:predict``, which answers in the shared contract; its R-package
        route answers every output keyed by name); in mode tensorflow, Connect's
        ``<signature>/predict``."""
        from tfdeploy_connect.client import refused_key, ssl_context

        if self._content_url is None:
            content = self.api.find_content(self.content_name)
            if content is None or content.get("bundle_id") is None:
                raise TargetError(
                    f"nothing is deployed on {self._where}", hint="run tfdeploy deploy first"
                )
            self._content_url = str(content["content_url"]).rstrip("/") + "/"
        body = dict(request)
        if self.config.mode == "app":
            url = f"{self._content_url}v1/models/{quote(self.model_name, safe='')}:predict"
        else:
            signature = str(body.pop("signature_name", None) or DEFAULT_SIGNATURE)
            url = f"{self._content_url}{quote(signature, safe='')}/predict"
        if self._ssl is None and self.config.server.startswith("https:"):
            self._ssl = ssl_context(self.config)
        headers = {"Authorization": f"Key {self.config.api_key.get_secret_value()}"}
        try:
            answer: dict[str, Any] = request_json(
                "POST",
                url,
                body,
                headers=headers,
                timeout=self.config.request_timeout,
                context=self._ssl,
            )
        except RemoteError as exc:
            if exc.status == 401:
                raise refused_key(self.config.server) from exc
            raise
        return answer

    def rollback(self, to: str | None = None, *, discard: bool = False) -> Status:
        """Serve the bundle before the active one again (or bundle ``to``); the replaced bundle
        stays on Connect, so ``--to`` it rolls forward again, unless ``discard`` deletes it."""
        state = self._state()
        if state is not None and not state.ours:
            raise TargetError(f"{self._where} was not published by tfdeploy")
        if state is None or state.active is None:
            raise TargetError(f"nothing is deployed on {self._where}, so nothing to roll back")
        active = state.active
        ids = sorted(state.ids, key=lambda b: (len(b), b))
        if to is None:
            earlier = [b for b in ids if (len(b), b) < (len(active), active)]
            if not earlier:
                raise TargetError(f"bundle {active} is the oldest bundle of {self._where}")
            goal = earlier[-1]
        else:
            goal = to.strip()
            if goal not in state.ids:
                raise TargetError(
                    f"{self._where} has no bundle {goal!r} (bundles: {', '.join(ids)})"
                )
        if goal == active:
            self.progress.step(f"bundle {goal} serves already")
            return self._status_of(state)
        kept = "is deleted once it is replaced" if discard else "stays on Connect"
        self.progress.step(
            f"deploying bundle {goal} again; bundle {active} {kept}"
            + ("" if discard else f" (roll forward with --to {active})")
        )
        task_id = self.api.deploy(state.guid, goal)
        state.record.task = task_id
        self._save(state)
        task = self._wait(task_id, state)
        if task.get("code") != 0:
            raise self._task_failed(task, active, state)
        state.content = self.api.get_content(state.guid)
        if discard:
            self.api.delete_bundle(state.guid, active)
            self.progress.step(f"deleted bundle {active}")
        return self._status_of(state, task)

    def undeploy(self) -> Status:
        """Delete the content item with its bundles (only content tfdeploy published)."""
        state = self._state()
        if state is not None:
            if not state.ours:
                raise TargetError(
                    f"{self._where} was not published by tfdeploy, so tfdeploy does not delete it",
                    hint="delete it on Connect's dashboard if it should go",
                )
            self.progress.step(f"deleting {self._where} and its {len(state.bundles)} bundles")
            self.api.delete_content(state.guid)
        self._content_url = None
        return Status(self.name, self.plugin, self.model_name, "absent", detail=f"no {self._where}")
