"""A local fake of the Posit Connect server, spoken to by the real rsconnect-python client.

It implements the part of Connect's API that publishing uses, as documented in Posit's API
reference and as rsconnect-python 1.32 calls it (``rsconnect/api.py``):

- ``GET /__api__/server_settings`` and ``GET /__api__/v1/server_settings/python``;
  ``GET /__api__/v1/user`` (the key check).
- Content: ``GET/POST /__api__/v1/content`` (``?name=`` filter), ``GET/PATCH/DELETE
  /__api__/v1/content/{guid}``; environment variables ``GET/PATCH/PUT .../environment``
  (a GET answers names only, never values).
- Bundles: ``POST .../bundles`` (a gzipped tar, sent with chunked transfer encoding by
  rsconnect-python; from version 2025.12 also multipart form data with metadata),
  ``GET .../bundles[/{id}]``,
  ``GET .../bundles/{id}/download``, ``DELETE .../bundles/{id}``.
- ``POST .../deploy {"bundle_id"}`` → ``{"task_id"}``, and ``GET /__api__/v1/tasks/{id}?first=N&wait=S``
  with the task's output lines, ``finished``, ``code``, ``error``, ``last`` and ``result``.
  The content's ``bundle_id`` (its active bundle) changes only when a deploy task succeeds.
- Content serving at ``/content/{guid}/...``: a ``python-fastapi`` bundle really runs (see
  :mod:`tests.connect.fake_content`), a ``tensorflow-saved-model`` bundle answers
  ``POST /<signature>/predict``.

The wire (HTTP/1.1, chunked bodies, dropped and held connections) is
:mod:`tests.connect.fake_http`. Every ``/__api__`` call must carry ``Authorization: Key <api
key>``; without it the answer is Connect's 401 ``{"code": 30, "error": ...}``. Content URLs
need the key too unless the content's ``access_type`` is ``all``. The fake never prints, logs
or stores the key anywhere but in memory for the comparison.

For tests: :meth:`FakeConnect.fail` injects faults, :attr:`FakeConnect.requests` records each
request, and :meth:`FakeConnect.content_items`, :meth:`~FakeConnect.bundles`,
:meth:`~FakeConnect.task`, :meth:`~FakeConnect.env_names`, :meth:`~FakeConnect.app_pids`
show the state. :meth:`FakeConnect.stop` stops every app process it started.
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import hmac
import io
import json
import re
import secrets
import shutil
import string
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from tests.connect.fake_content import (
    AppProcess,
    Runtime,
    SavedModelRuntime,
    StartError,
    manifest_app_mode,
    unpack_bundle,
)
from tests.connect.fake_http import DROP, HOLD, Answer, Reply, Request, Server

#: The request steps a fault can be injected into, each a group of routes.
STEPS = (
    "settings",
    "user",
    "content-list",
    "content-create",
    "content-get",
    "content-update",
    "content-delete",
    "environment",
    "bundle-upload",
    "bundle-list",
    "bundle-get",
    "bundle-download",
    "bundle-delete",
    "deploy",
    "task",
    "content-request",
)
#: Fault kinds: ``500`` answers Connect's error JSON with status 500; ``drop`` closes the
#: connection without an answer; ``timeout`` holds the request without an answer until the
#: client gives up (for ``deploy``: the task never finishes); ``failed-task`` (``deploy`` only)
#: makes the task finish with code 1 and an error text.
KINDS = ("500", "drop", "timeout", "failed-task")

#: Connect's application error codes (``APIError.code`` in the API reference).
INTERNAL_FAILURE = 1
BAD_REQUEST = 2
OBJECT_DOES_NOT_EXIST = 4
INVALID_APPLICATION_NAME = 5
INVALID_PARAMETER = 25
DUPLICATE_NAME = 26
INVALID_LOGIN = 30
DELETE_ACTIVE_BUNDLE = 75
CONTENT_CHECKSUM = 104
UNKNOWN_ACCESS_TYPE = 117
INVALID_JSON = 121
BUNDLE_EXTRACT = 135
DUPLICATE_ENVIRONMENT_VARIABLE = 149

_NAME = re.compile(r"[A-Za-z0-9._-]{3,64}")
_ACCESS_TYPES = ("all", "logged_in", "acl")
#: Fields of the documented CreateContentInput/UpdateContentInput beyond name, title,
#: description and access_type; stored and echoed back as given.
_SETTINGS_FIELDS = (
    "connection_timeout",
    "read_timeout",
    "init_timeout",
    "idle_timeout",
    "max_processes",
    "min_processes",
    "max_conns_per_process",
    "load_factor",
    "memory_request",
    "memory_limit",
    "cpu_request",
    "cpu_limit",
    "amd_gpu_limit",
    "nvidia_gpu_limit",
    "service_account_name",
    "default_image_name",
    "default_r_environment_management",
    "default_py_environment_management",
    "run_as",
    "run_as_current_user",
)
_TASK_ID_CHARS = string.ascii_letters + string.digits


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An answer with Connect's error body ``{"code": ..., "error": ..., "payload": null}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def reply(self) -> Reply:
        """The error as an HTTP answer."""
        return Reply.json(self.status, {"code": self.code, "error": self.message, "payload": None})


@dataclass
class RequestRecord:
    """One request the fake received: never its headers, so never the key."""

    method: str
    path: str
    query: str
    step: str | None
    bytes_received: int
    chunked: bool
    status: int | None = None
    """The answer's status; ``None`` when the connection was dropped or held."""


@dataclass
class _Fault:
    kind: str
    remaining: int
    message: str


@dataclass
class _Bundle:
    id: str
    content_guid: str
    archive: Path
    size: int
    md5: str
    sha1: str
    created_time: str
    metadata: dict[str, Any]
    py_version: str | None = None


@dataclass
class _Task:
    id: str
    output: list[str] = field(default_factory=list)
    finished: bool = False
    code: int = 0
    error: str = ""


@dataclass
class _Content:
    guid: str
    id: str
    name: str
    title: str | None
    description: str
    access_type: str
    owner_guid: str
    created_time: str
    settings: dict[str, Any] = field(default_factory=dict)
    last_deployed_time: str | None = None
    bundle_id: str | None = None
    app_mode: str = "unknown"
    py_version: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    deploy_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Request:
    """A request routed to an API handler, with the parameters its path matched."""

    wire: Request
    params: dict[str, str]

    @property
    def query(self) -> dict[str, list[str]]:
        return self.wire.query

    @property
    def body(self) -> bytes:
        return self.wire.body

    @property
    def content_type(self) -> str:
        return self.wire.header("Content-Type") or ""

    def header(self, name: str) -> str | None:
        return self.wire.header(name)

    def json(self) -> Any:
        try:
            return json.loads(self.wire.body or b"null")
        except ValueError as exc:
            raise ApiError(400, INVALID_JSON, f"The request body is not valid JSON: {exc}") from exc


_Handler = Callable[["FakeConnect", _Request], Reply]
_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = []


def _route(method: str, pattern: str, step: str) -> Callable[[_Handler], _Handler]:
    def register(func: _Handler) -> _Handler:
        _ROUTES.append((method, re.compile(f"/__api__{pattern}"), step, func.__name__))
        return func

    return register


class FakeConnect:
    """A fake Posit Connect server on ``127.0.0.1``, threaded, with real content processes.

    ``FakeConnect(api_key).start()`` listens on a free port (:attr:`url`); :meth:`stop` shuts
    it down with every app it started. ``version`` is what ``server_settings`` reports, and
    what the API accepts follows it as rsconnect-python expects: before 2025.06 the deploy
    field ``activate`` is an unknown field (a 400); before 2025.12 a bundle upload is the
    archive itself, so a multipart upload with metadata is not a gzipped tar (a 400).
    ``python_versions`` are the Python installations offered (apps always run on this
    interpreter).
    """

    def __init__(
        self,
        api_key: str,
        *,
        workdir: str | Path | None = None,
        version: str = "2024.12.0",
        python_versions: tuple[str, ...] | None = None,
        app_start_timeout: float = 60.0,
        task_step_seconds: float = 0.05,
    ) -> None:
        if not api_key:
            raise ValueError("the fake Connect needs a non-empty API key")
        self._api_key = api_key.encode()
        self.version = version
        self.python_versions = python_versions or (".".join(map(str, sys.version_info[:3])),)
        self.app_start_timeout = app_start_timeout
        self.task_step_seconds = task_step_seconds
        self.user: dict[str, Any] = {
            "email": "pat@example.com",
            "username": "pat",
            "first_name": "Pat",
            "last_name": "Publisher",
            "user_role": "publisher",
            "created_time": _now(),
            "updated_time": _now(),
            "active_time": _now(),
            "confirmed": True,
            "locked": False,
            "guid": str(uuid.uuid4()),
        }
        self._workdir = workdir
        self._root: Path | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._contents: dict[str, _Content] = {}
        self._bundles: dict[str, _Bundle] = {}
        self._tasks: dict[str, _Task] = {}
        self._runtimes: dict[str, Runtime] = {}
        self._processes: list[AppProcess] = []
        self._workers: list[threading.Thread] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._requests: list[RequestRecord] = []
        self._next_id = 0
        self._server: Server | None = None
        self.url = ""

    def __repr__(self) -> str:
        return f"<FakeConnect {self.url or 'not started'}>"

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeConnect:
        """Listen on a free port of 127.0.0.1 and serve in a background thread."""
        self._root = Path(tempfile.mkdtemp(prefix="fake-connect-", dir=self._workdir))
        self._server = Server(self._handle)
        self.url = self._server.url
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop serving, stop every app process started, and remove the working files."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._server is not None:
            self._server.stop()
            self._server = None
        for worker in list(self._workers):
            worker.join(10)
        with self._lock:
            runtimes = list(self._runtimes.values())
            self._runtimes.clear()
            processes = list(self._processes)
            self._processes.clear()
        for runtime in runtimes:
            runtime.stop()
        for process in processes:
            process.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        atexit.unregister(self.stop)

    def __enter__(self) -> FakeConnect:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults, requests and state, for tests ---------------------------------------------

    def fail(self, step: str, kind: str, times: int = 1, message: str | None = None) -> None:
        """Make the next ``times`` requests of ``step`` fail as ``kind`` (see :data:`KINDS`).

        ``message`` is the error text of a ``500`` or a ``failed-task``.
        """
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; choose from {', '.join(STEPS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose from {', '.join(KINDS)}")
        if kind == "failed-task" and step != "deploy":
            raise ValueError("a failed-task fault belongs to the deploy step")
        if times < 1:
            raise ValueError("times must be at least 1")
        default = "the fake Connect failed this on purpose"
        with self._lock:
            self._faults.setdefault(step, []).append(_Fault(kind, times, message or default))

    def pending_faults(self) -> dict[str, list[tuple[str, int]]]:
        """Faults not yet used up: step → [(kind, remaining)]."""
        with self._lock:
            return {s: [(f.kind, f.remaining) for f in fs] for s, fs in self._faults.items() if fs}

    def clear_faults(self) -> None:
        """Forget every fault not yet used up."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._requests.clear()

    def content_items(self) -> list[dict[str, Any]]:
        """Every content item, as ``GET /v1/content`` answers them."""
        with self._lock:
            return [self._content_json(c) for c in self._contents.values()]

    def bundles(self, guid: str) -> list[dict[str, Any]]:
        """The bundles of content ``guid``, newest first, as the API answers them."""
        with self._lock:
            found = [b for b in self._bundles.values() if b.content_guid == guid]
            return [self._bundle_json(b) for b in sorted(found, key=lambda b: -int(b.id))]

    def active_bundle(self, guid: str) -> str | None:
        """The id of the bundle content ``guid`` serves, if any."""
        with self._lock:
            return self._contents[guid].bundle_id

    def task(self, task_id: str) -> dict[str, Any]:
        """A task with all its output."""
        with self._lock:
            return self._task_json(self._tasks[task_id], 0)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task, oldest first, with all its output."""
        with self._lock:
            return [self._task_json(t, 0) for t in self._tasks.values()]

    def env_names(self, guid: str) -> list[str]:
        """The names of content ``guid``'s environment variables."""
        with self._lock:
            return sorted(self._contents[guid].env)

    def app_pids(self, guid: str | None = None) -> list[int]:
        """Process ids of the app processes running (for content ``guid``, or all)."""
        with self._lock:
            if guid is not None:
                runtime = self._runtimes.get(guid)
                processes = [runtime] if isinstance(runtime, AppProcess) else []
            else:
                processes = list(self._processes)
            return [p.pid for p in processes if p.running()]

    # --- plumbing ------------------------------------------------------------------------

    def _new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id)

    def _take_fault(self, step: str, kinds: tuple[str, ...]) -> _Fault | None:
        with self._lock:
            for fault in self._faults.get(step, []):
                if fault.kind in kinds:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults[step].remove(fault)
                    return fault
        return None

    def _authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Key "):
            return False
        return hmac.compare_digest(authorization[4:].strip().encode(), self._api_key)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _content(self, guid: str) -> _Content:
        content = self._contents.get(guid)
        if content is None:
            raise ApiError(404, OBJECT_DOES_NOT_EXIST, "The requested object does not exist.")
        return content

    def _content_json(self, c: _Content) -> dict[str, Any]:
        settings = {name: c.settings.get(name) for name in _SETTINGS_FIELDS}
        settings["run_as_current_user"] = bool(settings["run_as_current_user"])
        return {
            "guid": c.guid,
            "name": c.name,
            "title": c.title,
            "description": c.description,
            "access_type": c.access_type,
            "locked": False,
            "locked_message": "",
            **settings,
            "created_time": c.created_time,
            "last_deployed_time": c.last_deployed_time or c.created_time,
            "bundle_id": c.bundle_id,
            "app_mode": c.app_mode,
            "content_category": "",
            "parameterized": False,
            "cluster_name": "Local" if c.bundle_id else None,
            "image_name": None,
            "r_version": None,
            "py_version": c.py_version,
            "quarto_version": None,
            "r_environment_management": None,
            "py_environment_management": True if c.py_version else None,
            "owner_guid": c.owner_guid,
            "content_url": f"{self.url}/content/{c.guid}/",
            "dashboard_url": f"{self.url}/connect/#/apps/{c.guid}",
            "app_role": "owner",
            "id": c.id,
        }

    def _bundle_json(self, b: _Bundle) -> dict[str, Any]:
        content = self._contents.get(b.content_guid)
        return {
            "id": b.id,
            "content_guid": b.content_guid,
            "created_by": self.user["guid"],
            "created_time": b.created_time,
            "cluster_name": None,
            "image_name": None,
            "r_version": None,
            "r_environment_management": None,
            "py_version": b.py_version,
            "py_environment_management": True if b.py_version else None,
            "quarto_version": None,
            "active": content is not None and content.bundle_id == b.id,
            "size": b.size,
            "metadata": {
                "source": None,
                "source_repo": None,
                "source_branch": None,
                "source_commit": None,
                **b.metadata,
                "archive_md5": b.md5,
                "archive_sha1": b.sha1,
            },
        }

    @staticmethod
    def _task_json(task: _Task, first: int) -> dict[str, Any]:
        return {
            "id": task.id,
            "output": task.output[first:],
            "result": None,
            "finished": task.finished,
            "code": task.code,
            "error": task.error,
            "last": len(task.output),
        }

    def _say(self, task: _Task, line: str) -> None:
        with self._changed:
            task.output.append(line)
            self._changed.notify_all()

    def _finish(self, task: _Task, code: int = 0, error: str = "") -> None:
        with self._changed:
            if error:
                task.output.append(f"Error: {error}")
            task.finished, task.code, task.error = True, code, error
            self._changed.notify_all()

    # --- server information ----------------------------------------------------------------

    @_route("GET", "/server_settings", "settings")
    def _server_settings(self, req: _Request) -> Reply:
        return Reply.json(
            200,
            {
                "hostname": "fake-connect",
                "version": self.version,
                "build": f"v{self.version}",
                "python": {"enabled": True, "versions": list(self.python_versions)},
            },
        )

    @_route("GET", "/v1/server_settings/python", "settings")
    def _python_settings(self, req: _Request) -> Reply:
        installations = [
            {"version": v, "cluster_name": "Local", "image_name": "Local"}
            for v in self.python_versions
        ]
        return Reply.json(200, {"installations": installations, "api_enabled": True})

    @_route("GET", "/v1/user", "user")
    def _me(self, req: _Request) -> Reply:
        return Reply.json(200, self.user)

    # --- content ---------------------------------------------------------------------------

    @_route("GET", "/v1/content", "content-list")
    def _list_content(self, req: _Request) -> Reply:
        name = req.query.get("name", [None])[0]
        owner = req.query.get("owner_guid", [None])[0]
        with self._lock:
            found = [
                self._content_json(c)
                for c in self._contents.values()
                if (name is None or c.name == name) and (owner is None or c.owner_guid == owner)
            ]
        return Reply.json(200, found)

    @_route("POST", "/v1/content", "content-create")
    def _create_content(self, req: _Request) -> Reply:
        body = _object(req.json())
        _check_fields(body, ("name", "title", "description", "access_type", *_SETTINGS_FIELDS))
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ApiError(
                400,
                INVALID_APPLICATION_NAME,
                "The content name must be 3 to 64 letters, digits, periods, dashes "
                f"or underscores; got {name!r}.",
            )
        access_type = body.get("access_type", "acl")
        if access_type not in _ACCESS_TYPES:
            raise ApiError(400, UNKNOWN_ACCESS_TYPE, f"Unknown access type {access_type!r}.")
        with self._lock:
            if any(c.name == name for c in self._contents.values()):
                raise ApiError(
                    409, DUPLICATE_NAME, f"A content item named {name!r} already exists."
                )
            content = _Content(
                guid=str(uuid.uuid4()),
                id=self._new_id(),
                name=name,
                title=body.get("title"),
                description=body.get("description") or "",
                access_type=access_type,
                owner_guid=self.user["guid"],
                created_time=_now(),
                settings={k: body[k] for k in _SETTINGS_FIELDS if k in body},
            )
            self._contents[content.guid] = content
            return Reply.json(200, self._content_json(content))

    @_route("GET", "/v1/content/(?P<guid>[^/]+)", "content-get")
    def _get_content(self, req: _Request) -> Reply:
        with self._lock:
            return Reply.json(200, self._content_json(self._content(req.params["guid"])))

    @_route("PATCH", "/v1/content/(?P<guid>[^/]+)", "content-update")
    def _update_content(self, req: _Request) -> Reply:
        body = _object(req.json())
        _check_fields(body, ("name", "title", "description", "access_type", *_SETTINGS_FIELDS))
        with self._lock:
            content = self._content(req.params["guid"])
            if "name" in body:
                name = body["name"]
                if not isinstance(name, str) or not _NAME.fullmatch(name):
                    raise ApiError(400, INVALID_APPLICATION_NAME, f"Invalid name {name!r}.")
                if any(c.name == name and c is not content for c in self._contents.values()):
                    raise ApiError(409, DUPLICATE_NAME, f"A content item named {name!r} exists.")
                content.name = name
            if "access_type" in body:
                if body["access_type"] not in _ACCESS_TYPES:
                    raise ApiError(400, UNKNOWN_ACCESS_TYPE, "Unknown access type.")
                content.access_type = body["access_type"]
            if "title" in body:
                content.title = body["title"]
            if "description" in body:
                content.description = body["description"] or ""
            content.settings.update({k: body[k] for k in _SETTINGS_FIELDS if k in body})
            return Reply.json(200, self._content_json(content))

    @_route("DELETE", "/v1/content/(?P<guid>[^/]+)", "content-delete")
    def _delete_content(self, req: _Request) -> Reply:
        with self._lock:
            content = self._content(req.params["guid"])
            content.deleted = True
            del self._contents[content.guid]
            runtime = self._runtimes.pop(content.guid, None)
            for bundle_id in [
                b.id for b in self._bundles.values() if b.content_guid == content.guid
            ]:
                self._bundles.pop(bundle_id).archive.unlink(missing_ok=True)
        if runtime is not None:
            runtime.stop()
        return Reply(204)

    # --- environment variables -----------------------------------------------------------------

    @_route("GET", "/v1/content/(?P<guid>[^/]+)/environment", "environment")
    def _get_environment(self, req: _Request) -> Reply:
        with self._lock:
            return Reply.json(200, sorted(self._content(req.params["guid"]).env))

    @_route("PATCH", "/v1/content/(?P<guid>[^/]+)/environment", "environment")
    def _patch_environment(self, req: _Request) -> Reply:
        changes = _env_changes(req.json())
        with self._lock:
            content = self._content(req.params["guid"])
            for name, value in changes.items():
                if value is None:
                    content.env.pop(name, None)
                else:
                    content.env[name] = value
            return Reply.json(200, sorted(content.env))

    @_route("PUT", "/v1/content/(?P<guid>[^/]+)/environment", "environment")
    def _put_environment(self, req: _Request) -> Reply:
        changes = _env_changes(req.json())
        with self._lock:
            content = self._content(req.params["guid"])
            content.env = {k: v for k, v in changes.items() if v is not None}
            return Reply.json(200, sorted(content.env))

    # --- bundles -------------------------------------------------------------------------

    @_route("POST", "/v1/content/(?P<guid>[^/]+)/bundles", "bundle-upload")
    def _upload_bundle(self, req: _Request) -> Reply:
        archive = req.body
        metadata: dict[str, Any] = {}
        if req.content_type.startswith("multipart/form-data") and self._at_least(2025, 12):
            archive, metadata = _multipart_bundle(req)  # bundle metadata came in 2025.12
        if not archive:
            raise ApiError(400, BAD_REQUEST, "The request has no bundle archive.")
        md5 = hashlib.md5(archive)
        checksum = req.header("X-Content-Checksum")
        if checksum is not None and checksum != base64.b64encode(md5.digest()).decode():
            raise ApiError(400, CONTENT_CHECKSUM, "The bundle does not match X-Content-Checksum.")
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ApiError(400, BUNDLE_EXTRACT, f"The bundle is not a gzipped tar: {exc}") from exc
        with self._lock:
            content = self._content(req.params["guid"])
            assert self._root is not None
            bundle_id = self._new_id()
            path = self._root / "archives" / f"{bundle_id}.tar.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive)
            bundle = _Bundle(
                id=bundle_id,
                content_guid=content.guid,
                archive=path,
                size=len(archive),
                md5=md5.hexdigest(),
                sha1=hashlib.sha1(archive).hexdigest(),
                created_time=_now(),
                metadata=metadata,
            )
            self._bundles[bundle_id] = bundle
            return Reply.json(200, self._bundle_json(bundle))

    @_route("GET", "/v1/content/(?P<guid>[^/]+)/bundles", "bundle-list")
    def _list_bundles(self, req: _Request) -> Reply:
        with self._lock:
            self._content(req.params["guid"])
        return Reply.json(200, self.bundles(req.params["guid"]))

    def _bundle(self, req: _Request) -> _Bundle:
        self._content(req.params["guid"])
        bundle = self._bundles.get(req.params["bundle"])
        if bundle is None or bundle.content_guid != req.params["guid"]:
            raise ApiError(404, OBJECT_DOES_NOT_EXIST, "The requested bundle does not exist.")
        return bundle

    @_route("GET", "/v1/content/(?P<guid>[^/]+)/bundles/(?P<bundle>[^/]+)", "bundle-get")
    def _get_bundle(self, req: _Request) -> Reply:
        with self._lock:
            return Reply.json(200, self._bundle_json(self._bundle(req)))

    @_route(
        "GET", "/v1/content/(?P<guid>[^/]+)/bundles/(?P<bundle>[^/]+)/download", "bundle-download"
    )
    def _download_bundle(self, req: _Request) -> Reply:
        with self._lock:
            bundle = self._bundle(req)
            data = bundle.archive.read_bytes()
        return Reply(200, data, [("Content-Type", "application/gzip")])

    @_route("DELETE", "/v1/content/(?P<guid>[^/]+)/bundles/(?P<bundle>[^/]+)", "bundle-delete")
    def _delete_bundle(self, req: _Request) -> Reply:
        with self._lock:
            bundle = self._bundle(req)
            if self._contents[bundle.content_guid].bundle_id == bundle.id:
                raise ApiError(
                    400, DELETE_ACTIVE_BUNDLE, "Deletion is not allowed while the bundle is active."
                )
            del self._bundles[bundle.id]
            bundle.archive.unlink(missing_ok=True)
        return Reply(204)

    # --- deploy and tasks ----------------------------------------------------------------

    @_route("POST", "/v1/content/(?P<guid>[^/]+)/deploy", "deploy")
    def _deploy(self, req: _Request) -> Reply:
        body = _object(req.json())
        allowed = ("bundle_id", "activate") if self._at_least(2025, 6) else ("bundle_id",)
        _check_fields(body, allowed)
        if body.get("activate") is False:
            raise ApiError(400, INVALID_PARAMETER, "The fake Connect activates every deploy.")
        with self._lock:
            content = self._content(req.params["guid"])
            bundle_id = body.get("bundle_id")
            if bundle_id is None:
                mine = [int(b.id) for b in self._bundles.values() if b.content_guid == content.guid]
                if not mine:
                    raise ApiError(400, BAD_REQUEST, "The content has no bundle to deploy.")
                bundle_id = str(max(mine))
            bundle = self._bundles.get(str(bundle_id))
            if bundle is None or bundle.content_guid != content.guid:
                raise ApiError(
                    404, OBJECT_DOES_NOT_EXIST, f"No bundle {bundle_id} for this content."
                )
            task = _Task("".join(secrets.choice(_TASK_ID_CHARS) for _ in range(16)))
            self._tasks[task.id] = task
            fault = self._take_fault("deploy", ("failed-task", "timeout"))
            worker = threading.Thread(
                target=self._run_deploy,
                args=(task, content, bundle, fault),
                name=f"fake-connect-deploy-{task.id}",
                daemon=True,
            )
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()
        return Reply.json(202, {"task_id": task.id})

    def _at_least(self, year: int, month: int) -> bool:
        """Whether this server's version is ``year.month`` or later."""
        return [int(p) for p in re.findall(r"\d+", self.version)[:2]] >= [year, month]

    @_route("GET", "/v1/tasks/(?P<task>[^/]+)", "task")
    def _get_task(self, req: _Request) -> Reply:
        try:
            first = int(req.query.get("first", ["0"])[0])
            wait = int(req.query.get("wait", ["0"])[0])
        except ValueError as exc:
            raise ApiError(400, INVALID_PARAMETER, f"first and wait are integers: {exc}") from exc
        if first < 0 or not 0 <= wait <= 20:
            raise ApiError(
                400, INVALID_PARAMETER, "first must be >= 0 and wait between 0 and 20 seconds."
            )
        with self._changed:
            task = self._tasks.get(req.params["task"])
            if task is None:
                raise ApiError(404, OBJECT_DOES_NOT_EXIST, "The requested task does not exist.")
            self._changed.wait_for(lambda: task.finished or self._stopping.is_set(), timeout=wait)
            return Reply.json(200, self._task_json(task, first))

    def _run_deploy(
        self, task: _Task, content: _Content, bundle: _Bundle, fault: _Fault | None
    ) -> None:
        self._say(task, f"Deploying bundle {bundle.id} for content {content.guid}")
        if fault is not None and fault.kind == "timeout":
            self._say(task, "Waiting for a free worker...")
            self._stopping.wait()
            return
        with content.deploy_lock:
            try:
                self._deploy_bundle(task, content, bundle, fault)
            except StartError as exc:
                self._finish(task, 1, str(exc))
            except Exception as exc:  # the fake's own bug: fail the task, keep serving
                self._finish(task, 1, f"internal error in the fake Connect: {exc!r}")

    def _deploy_bundle(
        self, task: _Task, content: _Content, bundle: _Bundle, fault: _Fault | None
    ) -> None:
        assert self._root is not None
        step = self.task_step_seconds
        directory = self._root / "deploys" / content.guid / f"bundle{bundle.id}-{task.id}"
        self._say(task, f"Extracting bundle {bundle.id} ({bundle.size} bytes)")
        manifest = unpack_bundle(bundle.archive, directory)
        self._stopping.wait(step)
        if fault is not None:
            self._say(task, "Preparing the content's environment")
            self._stopping.wait(step)
            raise StartError(fault.message)
        app_mode = manifest_app_mode(manifest)
        if content.app_mode not in ("unknown", app_mode):
            raise StartError(
                f"cannot change the app mode of this content from {content.app_mode} to {app_mode}"
            )
        runtime: Runtime
        py_version = None
        if app_mode == "python-fastapi":
            py_version = self._pick_python(task, manifest)
            self._say(task, "Skipping package installation: the fake runs the test environment")
            self._stopping.wait(step)
            entrypoint = manifest["metadata"].get("entrypoint") or "app"
            if ":" not in entrypoint:
                entrypoint += ":app"
            self._say(task, f"Launching Python FastAPI application {entrypoint}")
            with self._lock:
                env = dict(content.env)
            app = AppProcess(directory, entrypoint, env)
            with self._lock:
                self._processes.append(app)
            try:
                app.wait_ready(self.app_start_timeout, lambda s: self._say(task, s), self._stopping)
            except StartError:
                with self._lock:
                    self._processes.remove(app)
                raise
            runtime = app
        elif app_mode == "tensorflow-saved-model":
            self._say(task, "Loading the TensorFlow SavedModel")
            runtime = SavedModelRuntime(directory)
            self._say(task, f"Serving model version {runtime.version}")
        else:
            raise StartError(f"the fake Connect cannot run app mode {app_mode!r}")
        with self._lock:
            if content.deleted or self._stopping.is_set():
                runtime.stop()
                raise StartError("the content was deleted while it was being deployed")
            previous = self._runtimes.get(content.guid)
            self._runtimes[content.guid] = runtime
            content.bundle_id = bundle.id
            content.app_mode = app_mode
            content.py_version = py_version
            content.last_deployed_time = _now()
            bundle.py_version = py_version
            if isinstance(previous, AppProcess):
                self._processes.remove(previous)
        if previous is not None:
            previous.stop()
        self._say(task, f"Bundle {bundle.id} is now active")
        self._finish(task)

    def _pick_python(self, task: _Task, manifest: dict[str, Any]) -> str:
        """The offered version that fits ``environment.python.requires`` (a version
        specifier) when the manifest has one, else the major.minor of ``python.version``."""
        requires = manifest.get("environment", {}).get("python", {}).get("requires")
        requested = str(manifest.get("python", {}).get("version", ""))
        if requires:
            try:
                specifier = SpecifierSet(requires)
            except InvalidSpecifier as exc:
                raise StartError(f"the bundle's python requirement is invalid: {exc}") from exc
            fits = [v for v in self.python_versions if v in specifier]
            wanted = f"Python {requires}"
        else:
            minor = ".".join(requested.split(".")[:2])
            fits = [v for v in self.python_versions if not minor or v.startswith(minor + ".")]
            wanted = f"Python {requested or 'of any version'}"
        if not fits:
            raise StartError(
                f"the bundle requests {wanted}, which this server does not offer "
                f"(it has {', '.join(self.python_versions)})"
            )
        self._say(task, f"Bundle requested {wanted}; using Python {fits[0]}")
        return fits[0]

    # --- request handling ----------------------------------------------------------------

    def _handle(self, request: Request) -> Answer:
        """Route a request, record it, apply a pending fault or the key check, and answer."""
        step, action = self._route(request)
        record = RequestRecord(
            request.method,
            request.path,
            request.raw_query,
            step,
            len(request.body),
            request.chunked,
        )
        self._record(record)
        fault = None
        if step is not None:
            fault = self._take_fault(step, ("500", "drop") if step == "deploy" else KINDS)
        if fault is not None and fault.kind == "drop":
            return DROP
        if fault is not None and fault.kind == "timeout":
            return HOLD
        if fault is not None:
            reply = ApiError(500, INTERNAL_FAILURE, fault.message).reply()
        elif action is None:
            reply = ApiError(404, BAD_REQUEST, f"No such endpoint: {request.path}").reply()
        else:
            try:
                reply = action()
            except ApiError as err:
                reply = err.reply()
            except Exception as exc:  # a bug in the fake is a 500, as a server's would be
                reply = ApiError(500, INTERNAL_FAILURE, f"fake Connect error: {exc!r}").reply()
        record.status = reply.status
        return reply

    def _route(self, request: Request) -> tuple[str | None, Callable[[], Reply] | None]:
        """The step and the action of a request, the key check included."""
        authorized = self._authorized(request.header("Authorization"))
        unauthorized = ApiError(
            401, INVALID_LOGIN, "The requested operation requires authentication."
        )
        if request.path.startswith("/__api__/"):
            path = request.path.rstrip("/")
            for method, pattern, step, name in _ROUTES:
                match = pattern.fullmatch(path)
                if match and method == request.method:
                    if not authorized:
                        return step, unauthorized.reply
                    handler: _Handler = getattr(FakeConnect, name)
                    return step, functools.partial(
                        handler, self, _Request(request, match.groupdict())
                    )
            return None, None
        content = re.fullmatch(r"/content/(?P<guid>[^/]+)(?P<rest>/.*)?", request.path)
        if content is None:
            return None, None
        guid = content["guid"]
        target = (content["rest"] or "/") + (f"?{request.raw_query}" if request.raw_query else "")

        def serve() -> Reply:
            with self._lock:
                item = self._contents.get(guid)
                if item is None:
                    raise ApiError(
                        404, OBJECT_DOES_NOT_EXIST, "The requested object does not exist."
                    )
                if not (authorized or item.access_type == "all"):
                    raise unauthorized
                runtime = self._runtimes.get(guid)
            if runtime is None:
                raise ApiError(404, OBJECT_DOES_NOT_EXIST, "The content has no active bundle.")
            return runtime.handle(request.method, target, request.headers, request.body)

        return "content-request", serve


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, BAD_REQUEST, "The request body must be a JSON object.")
    return value


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, INVALID_PARAMETER, f"Unknown field(s): {', '.join(unknown)}.")


def _env_changes(value: Any) -> dict[str, str | None]:
    if not isinstance(value, list):
        raise ApiError(400, BAD_REQUEST, "The body must be a list of {name, value} objects.")
    changes: dict[str, str | None] = {}
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "value"}:
            raise ApiError(400, BAD_REQUEST, "Each variable is an object {name, value}.")
        name, val = item.get("name"), item.get("value")
        if not isinstance(name, str) or not name:
            raise ApiError(400, INVALID_PARAMETER, "An environment variable needs a name.")
        if val is not None and not isinstance(val, str):
            raise ApiError(400, INVALID_PARAMETER, f"The value of {name} must be a string.")
        if name in changes:
            raise ApiError(400, DUPLICATE_ENVIRONMENT_VARIABLE, f"{name} is given twice.")
        changes[name] = val
    return changes


def _multipart_bundle(req: _Request) -> tuple[bytes, dict[str, Any]]:
    head = f"Content-Type: {req.content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + req.body)
    archive, metadata = b"", {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if name == "archive":
            archive = payload
        elif name == "metadata":
            try:
                metadata = _object(json.loads(payload))
            except ValueError as exc:
                raise ApiError(400, INVALID_JSON, f"The metadata is not JSON: {exc}") from exc
    return archive, metadata
