"""A local fake of the Vertex AI ``v1`` REST API, for testing against the real client libraries.

``google-cloud-aiplatform`` talks to it over a socket after::

    aiplatform.init(api_endpoint=fake.url, api_transport="rest",
                    credentials=AnonymousCredentials(), project=fake.project, location=fake.location)

It answers the calls that SDK makes for models (``models:upload`` with ``parentModel``, get, list,
``:listVersions``, ``:mergeVersionAliases``, delete, ``:deleteVersion``), endpoints (create, get,
list, PATCH update, delete, ``:deployModel``, ``:undeployModel``, ``:mutateDeployedModel``) and
``:predict``, with long-running operations that finish after ``polls_to_finish`` polls (at
``/ui/...`` and ``/v1/...``). Resources are named with the project *number*, as Vertex does;
requests may use the project id or the number.

Predictions are real: when a deployment finishes, the fake downloads the model version's
``artifactUri`` from the GCS emulator and loads it with tfdeploy's runtime; ``:predict`` picks a
deployed model by the endpoint's traffic split and answers with its predictions.

With ``gcs_upstream`` set (the emulator's URL) the fake also forwards Cloud Storage's JSON API
(``/storage/``, ``/upload/``, ``/download/``, ``/batch/``) to the emulator, so pointing
``STORAGE_EMULATOR_HOST`` at the fake lets tests inject faults into uploads too.

Faults are injected with :meth:`FakeVertex.fail`; every request is logged in
:attr:`FakeVertex.requests`; the state is in :attr:`FakeVertex.models` and
:attr:`FakeVertex.endpoints` (read it, do not change it).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import json
import random
import re
import shutil
import socket
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Vertex AI refuses online prediction request bodies larger than this (1.5 MiB).
PREDICT_BODY_LIMIT = 1_572_864

#: Steps a fault can be injected at.
STEPS = (
    "upload",  # a Cloud Storage upload (POST or PUT under /upload/), through the GCS front
    "model-upload",  # POST .../models:upload
    "endpoint-create",  # POST .../endpoints
    "deploy",  # POST ...:deployModel
    "undeploy",  # POST ...:undeployModel
    "traffic",  # PATCH .../endpoints/E: Endpoint.update(traffic_split=...)
    "mutate",  # POST ...:mutateDeployedModel
    "delete",  # DELETE of an endpoint, a model or a model version
    "predict",  # POST ...:predict
    "operation",  # GET .../operations/O (polling); ``failed-operation``: the next one to finish
)

#: Kinds of fault: an HTTP error answer, a long-running operation that ends in an error, a
#: connection closed without an answer (``drop``: before the request is applied; ``drop-after``:
#: after it is applied, so the change happens but the client never hears of it).
KINDS = ("500", "503", "429", "failed-operation", "drop", "drop-after")

_LRO_STEPS = ("model-upload", "endpoint-create", "deploy", "undeploy", "mutate", "delete")

# google.rpc.Code names and numbers, and the HTTP status Google's REST mapping gives each.
_GRPC_CODES = {
    "CANCELLED": (1, 499),
    "UNKNOWN": (2, 500),
    "INVALID_ARGUMENT": (3, 400),
    "DEADLINE_EXCEEDED": (4, 504),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "FAILED_PRECONDITION": (9, 400),
    "ABORTED": (10, 409),
    "OUT_OF_RANGE": (11, 400),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
}

_HTTP_FAULTS = {
    "500": ("INTERNAL", "Internal error encountered."),
    "503": ("UNAVAILABLE", "The service is currently unavailable."),
    "429": ("RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com."),
}

# What a failed operation of each step says by default (Vertex's wording where known).
_FAILED_OPERATION_DEFAULTS = {
    "deploy": (
        "FAILED_PRECONDITION",
        "Model server never became ready. Please validate that your model file or container "
        "configuration are valid.",
    ),
    "model-upload": ("INTERNAL", "Model upload failed."),
    "endpoint-create": ("INTERNAL", "Endpoint creation failed."),
    "undeploy": ("INTERNAL", "Undeploying the model failed."),
    "mutate": ("INTERNAL", "Mutating the deployed model failed."),
    "delete": ("INTERNAL", "Deletion failed."),
    "operation": ("INTERNAL", "The operation failed."),
}

_ACCELERATORS = {
    "ACCELERATOR_TYPE_UNSPECIFIED": 0,
    "NVIDIA_TESLA_K80": 1,
    "NVIDIA_TESLA_P100": 2,
    "NVIDIA_TESLA_V100": 3,
    "NVIDIA_TESLA_P4": 4,
    "NVIDIA_TESLA_T4": 5,
    "TPU_V2": 6,
    "TPU_V3": 7,
    "NVIDIA_TESLA_A100": 8,
    "NVIDIA_A100_80GB": 9,
    "TPU_V4_POD": 10,
    "NVIDIA_L4": 11,
    "TPU_V5_LITEPOD": 12,
    "NVIDIA_H100_80GB": 13,
    "NVIDIA_H100_MEGA_80GB": 14,
    "NVIDIA_H200_141GB": 15,
    "NVIDIA_B200": 16,
    "NVIDIA_GB200": 17,
    "NVIDIA_RTX_PRO_6000": 18,
}
_ACCELERATOR_NAMES = {number: name for name, number in _ACCELERATORS.items()}

# Model.DeploymentResourcesType: a model served by a prebuilt or custom container supports
# dedicated and shared resources (not automatic ones, which are for AutoML models).
_DEDICATED_RESOURCES, _SHARED_RESOURCES = 1, 3

_MACHINE_TYPE = re.compile(r"^(n1|n2|n2d|e2|c2|c2d|c3|c3d|c4|a2|a3|g2|m1|ct5lp|ct6e)-[a-z0-9-]+$")
_TF_PREBUILT_IMAGE = re.compile(r"^(us|europe|asia)-docker\.pkg\.dev/vertex-ai/prediction/tf")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")

_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."
_EMPTY = "type.googleapis.com/google.protobuf.Empty"


class ApiError(Exception):
    """An error answer in Google's JSON shape: ``{"error": {"code", "message", "status"}}``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code, self.http_status = _GRPC_CODES[status]

    def body(self) -> dict[str, Any]:
        """The JSON body Google's REST APIs answer with."""
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


@dataclass
class RequestRecord:
    """One request the fake received."""

    method: str
    path: str  # as received (URL-encoded), without the query
    query: dict[str, list[str]]
    body_size: int  # bytes actually received
    step: str | None  # the fault step this request belongs to (see STEPS), if any
    status: int | None = None  # HTTP status answered; None while pending or when dropped


@dataclass
class Fault:
    """A fault waiting to be injected ``remaining`` more times."""

    step: str
    kind: str
    remaining: int
    status: str | None = None
    message: str | None = None


@dataclass
class ModelVersion:
    """One version of a model in the registry."""

    version_id: str
    artifact_uri: str
    image_uri: str
    labels: dict[str, str]
    aliases: list[str]
    description: str
    version_description: str
    create_time: str
    update_time: str


@dataclass
class Model:
    """A model in the registry with its versions (keyed by version id)."""

    id: str
    display_name: str
    create_time: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)

    def default_version(self) -> ModelVersion:
        """The version carrying the ``default`` alias."""
        for version in self.versions.values():
            if "default" in version.aliases:
                return version
        return list(self.versions.values())[-1]

    def resolve(self, version: str | None) -> ModelVersion | None:
        """A version by id or alias (the default one when ``version`` is None)."""
        if version is None:
            return self.default_version()
        if version in self.versions:
            return self.versions[version]
        return next((v for v in self.versions.values() if version in v.aliases), None)


@dataclass
class DeployedModel:
    """A model version deployed to an endpoint."""

    id: str
    model_id: str
    version_id: str
    display_name: str
    machine_type: str
    min_replicas: int
    max_replicas: int
    accelerator_type: str | None
    accelerator_count: int
    service_account: str
    create_time: str


@dataclass
class Endpoint:
    """An endpoint, its deployed models (keyed by deployed model id) and its traffic split."""

    id: str
    display_name: str
    description: str
    labels: dict[str, str]
    create_time: str
    update_time: str
    deployed: dict[str, DeployedModel] = field(default_factory=dict)
    traffic_split: dict[str, int] = field(default_factory=dict)


@dataclass
class _Operation:
    name: str
    metadata_type: str
    response_type: str
    apply: Callable[[], dict[str, Any]]  # changes the state, returns the response body
    create_time: str
    polls: int = 0
    finishing: bool = False
    done: bool = False
    response: dict[str, Any] | None = None
    error: ApiError | None = None
    forced_error: ApiError | None = None


@dataclass
class _Call:
    """One API request, as the route handlers see it."""

    args: dict[str, str]  # the path's named groups (model, version, endpoint, operation)
    body: dict[str, Any]
    query: dict[str, list[str]]
    ints: bool  # `$alt=json;enum-encoding=int`: enums as numbers
    fault: Fault | None  # a `failed-operation` fault for the operation this call starts

    def param(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None


class FakeVertex:
    """A threaded local server speaking the Vertex AI ``v1`` REST API.

    ``polls_to_finish``: how many polls a long-running operation needs before it is done
    (0: done in the answer that starts it). ``gcs_upstream``: URL of the GCS emulator, to read
    model artifacts from and to forward Cloud Storage requests to; without it the fake reads
    artifacts through ``STORAGE_EMULATOR_HOST``. ``seed``: of the random choice of a deployed
    model by traffic split.
    """

    def __init__(
        self,
        *,
        project: str = "tfdeploy-test",
        project_number: str = "123456789012",
        location: str = "us-central1",
        polls_to_finish: int = 2,
        gcs_upstream: str | None = None,
        seed: int = 0,
    ) -> None:
        self.project = project
        self.project_number = project_number
        self.location = location
        self.polls_to_finish = polls_to_finish
        self.gcs_upstream = gcs_upstream.rstrip("/") if gcs_upstream else None
        self.models: dict[str, Model] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._operations: dict[str, _Operation] = {}
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._seed = seed
        self._random = random.Random(seed)
        self._ids = {"model": 1000, "endpoint": 2000, "deployed": 3000, "operation": 9000}
        self._artifacts = Path(tempfile.mkdtemp(prefix="fake-vertex-"))
        self._server: ThreadingHTTPServer | None = None
        self._host = "127.0.0.1"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeVertex:
        """Start serving in a background thread; returns self."""
        handler = type("Handler", (_Handler,), {"owner": self})
        self._host = host
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-vertex", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the downloaded artifacts."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self._artifacts, ignore_errors=True)

    def __enter__(self) -> FakeVertex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the ``api_endpoint`` to give ``aiplatform.init``."""
        assert self._server is not None, "the fake is not started"
        return f"http://{self._host}:{self._server.server_port}"

    @property
    def parent(self) -> str:
        """``projects/NUMBER/locations/LOCATION``: how resource names start."""
        return f"projects/{self.project_number}/locations/{self.location}"

    def model_name(self, model_id: str) -> str:
        """The resource name of a model."""
        return f"{self.parent}/models/{model_id}"

    def endpoint_name(self, endpoint_id: str) -> str:
        """The resource name of an endpoint."""
        return f"{self.parent}/endpoints/{endpoint_id}"

    def reset(self) -> None:
        """Forget all resources, operations, faults and logged requests."""
        with self._lock:
            self.models.clear()
            self.endpoints.clear()
            self.requests.clear()
            self._faults.clear()
            self._operations.clear()
            self._random = random.Random(self._seed)

    # --- faults, the request log, inspection ---------------------------------------------------

    def fail(
        self,
        step: str,
        kind: str,
        times: int = 1,
        *,
        status: str | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next ``times`` requests of ``step`` fail with ``kind``.

        ``failed-operation`` applies to the steps answered with a long-running operation, and
        to ``operation``: the next operation to finish, whatever started it. The operation is
        accepted, then ends with an error (``status``, a google.rpc.Code name such as
        ``FAILED_PRECONDITION``, and ``message``) and changes nothing. ``status``/``message``
        also override the error of ``500``/``503``/``429``.
        """
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; one of {', '.join(STEPS)}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        if kind == "failed-operation" and step not in (*_LRO_STEPS, "operation"):
            raise ValueError(f"{step} is not answered with an operation, so it cannot fail as one")
        if status is not None and status not in _GRPC_CODES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            self._faults.append(Fault(step, kind, times, status, message))

    def pending_faults(self) -> list[Fault]:
        """Faults not injected yet."""
        with self._lock:
            return [f for f in self._faults if f.remaining > 0]

    def clear_faults(self) -> None:
        """Forget the faults not injected yet."""
        with self._lock:
            self._faults.clear()

    def calls(self, step: str) -> list[RequestRecord]:
        """The logged requests of one step (see :data:`STEPS`)."""
        with self._lock:
            return [r for r in self.requests if r.step == step]

    def endpoint_named(self, display_name: str) -> Endpoint:
        """The only endpoint with this display name."""
        with self._lock:
            found = [e for e in self.endpoints.values() if e.display_name == display_name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} endpoints are named {display_name!r}")
        return found[0]

    def models_named(self, display_name: str) -> list[Model]:
        """The models with this display name."""
        with self._lock:
            return [m for m in self.models.values() if m.display_name == display_name]

    def finish_operations(self) -> None:
        """Finish every pending operation now, as if each had been polled enough."""
        with self._lock:
            pending = [op for op in self._operations.values() if not op.done]
        for op in pending:
            self._finish(op)

    def _take_fault(self, step: str | None, kinds: tuple[str, ...]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.step == step and fault.kind in kinds and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None

    def _next_id(self, kind: str) -> str:
        with self._lock:
            self._ids[kind] += 1
            return str(self._ids[kind])

    # --- JSON views of the resources -----------------------------------------------------------

    def _model_json(self, model: Model, version: ModelVersion, ints: bool) -> dict[str, Any]:
        deployed = [
            {"endpoint": self.endpoint_name(e.id), "deployedModelId": d.id}
            for e in self.endpoints.values()
            for d in e.deployed.values()
            if d.model_id == model.id and d.version_id == version.version_id
        ]
        body: dict[str, Any] = {
            "name": self.model_name(model.id),
            "displayName": model.display_name,
            "description": version.description,
            "versionId": version.version_id,
            "versionAliases": list(version.aliases),
            "versionCreateTime": version.create_time,
            "versionUpdateTime": version.update_time,
            "versionDescription": version.version_description,
            "artifactUri": version.artifact_uri,
            "containerSpec": {"imageUri": version.image_uri},
            "supportedDeploymentResourcesTypes": (
                [_DEDICATED_RESOURCES, _SHARED_RESOURCES]
                if ints
                else ["DEDICATED_RESOURCES", "SHARED_RESOURCES"]
            ),
            "supportedInputStorageFormats": ["jsonl", "csv", "tf-record", "file-list", "bigquery"],
            "supportedOutputStorageFormats": ["jsonl", "bigquery"],
            "labels": dict(version.labels),
            "createTime": model.create_time,
            "updateTime": version.update_time,
            "etag": _etag(model.id, version.version_id, version.update_time),
            "modelSourceInfo": {"sourceType": 2 if ints else "CUSTOM"},
            "deployedModels": deployed,
        }
        return {k: v for k, v in body.items() if v not in ("", None, [], {})}

    def _deployed_json(self, d: DeployedModel, ints: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"machineType": d.machine_type}
        if d.accelerator_type:
            spec["acceleratorType"] = (
                _ACCELERATORS[d.accelerator_type] if ints else d.accelerator_type
            )
            spec["acceleratorCount"] = d.accelerator_count
        body: dict[str, Any] = {
            "id": d.id,
            "model": self.model_name(d.model_id),
            "modelVersionId": d.version_id,
            "displayName": d.display_name,
            "createTime": d.create_time,
            "dedicatedResources": {
                "machineSpec": spec,
                "minReplicaCount": d.min_replicas,
                "maxReplicaCount": d.max_replicas,
            },
            "serviceAccount": d.service_account,
            "status": {"availableReplicaCount": d.min_replicas, "lastUpdateTime": d.create_time},
        }
        return {k: v for k, v in body.items() if v != ""}

    def _endpoint_json(self, e: Endpoint, ints: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.endpoint_name(e.id),
            "displayName": e.display_name,
            "description": e.description,
            "labels": dict(e.labels),
            "deployedModels": [self._deployed_json(d, ints) for d in e.deployed.values()],
            "trafficSplit": dict(e.traffic_split),
            "etag": _etag(e.id, e.update_time, json.dumps(e.traffic_split, sort_keys=True)),
            "createTime": e.create_time,
            "updateTime": e.update_time,
        }
        return {k: v for k, v in body.items() if v not in ("", None, [], {})}

    # --- long-running operations ---------------------------------------------------------------

    def _start_operation(
        self,
        call: _Call,
        step: str,
        under: str,
        metadata_type: str,
        response_type: str,
        apply: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        op = _Operation(
            name=f"{under}/operations/{self._next_id('operation')}",
            metadata_type=_TYPE + metadata_type,
            response_type=response_type,
            apply=apply,
            create_time=_now(),
        )
        if call.fault is not None:
            status, message = _FAILED_OPERATION_DEFAULTS[step]
            op.forced_error = ApiError(call.fault.status or status, call.fault.message or message)
        with self._lock:
            self._operations[op.name] = op
        if self.polls_to_finish <= 0:
            self._finish(op)
        return self._operation_json(op)

    def _get_operation(self, call: _Call) -> dict[str, Any]:
        name = f"{self.parent}/{call.args['operation']}"
        with self._lock:
            op = self._operations.get(name)
            if op is None:
                raise ApiError("NOT_FOUND", f"Operation {name} not found.")
            op.polls += 1
            ready = op.polls >= self.polls_to_finish
        if ready:
            self._finish(op)
        return self._operation_json(op)

    def _finish(self, op: _Operation) -> None:
        with self._lock:
            if op.done or op.finishing:
                return
            op.finishing = True
            error = op.forced_error
            fault = None if error else self._take_fault("operation", ("failed-operation",))
            if fault is not None:
                status, message = _FAILED_OPERATION_DEFAULTS["operation"]
                error = ApiError(fault.status or status, fault.message or message)
        if error is None:
            try:
                op.response = op.apply()
            except ApiError as exc:  # the change turned out impossible when applied
                error = exc
        with self._lock:
            op.error = error
            op.done = True

    def _operation_json(self, op: _Operation) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": op.name,
            "metadata": {
                "@type": op.metadata_type,
                "genericMetadata": {"createTime": op.create_time, "updateTime": _now()},
            },
        }
        if op.done:
            body["done"] = True
            if op.error is not None:
                body["error"] = {"code": op.error.code, "message": op.error.message}
            else:
                body["response"] = {"@type": op.response_type, **(op.response or {})}
        return body

    # --- models --------------------------------------------------------------------------------

    def _upload_model(self, call: _Call) -> dict[str, Any]:
        spec = call.body.get("model")
        if not isinstance(spec, dict):
            raise ApiError("INVALID_ARGUMENT", "Missing required field: model.")
        display_name = spec.get("displayName") or ""
        if not display_name or len(display_name) > 128:
            raise ApiError("INVALID_ARGUMENT", "The Model's display_name must be 1-128 characters.")
        image = (spec.get("containerSpec") or {}).get("imageUri") or ""
        if not image:
            raise ApiError("INVALID_ARGUMENT", "Model.container_spec.image_uri must be set.")
        labels = _check_labels(spec.get("labels") or {})
        aliases = list(spec.get("versionAliases") or [])
        for alias in aliases:
            if not _ALIAS.match(alias):
                raise ApiError("INVALID_ARGUMENT", f"Invalid version alias: {alias!r}.")
        artifact_uri = str(spec.get("artifactUri") or "").rstrip("/")
        if _TF_PREBUILT_IMAGE.match(image):
            self._check_savedmodel_dir(artifact_uri)
        parent_model = call.body.get("parentModel")
        with self._lock:
            if parent_model:
                model_id = _model_id(parent_model)
                if model_id not in self.models:
                    raise ApiError("NOT_FOUND", f"The parent model {parent_model} does not exist.")
            else:
                model_id = call.body.get("modelId") or self._next_id("model")
                if model_id in self.models:
                    raise ApiError("ALREADY_EXISTS", f"Model {model_id} already exists.")

        def apply() -> dict[str, Any]:
            with self._lock:
                now = _now()
                model = self.models.setdefault(model_id, Model(model_id, display_name, now))
                new_aliases = list(aliases) if model.versions else ["default", *aliases]
                taken = {a for v in model.versions.values() for a in v.aliases} - {"default"}
                if taken & set(new_aliases):
                    raise ApiError(
                        "ALREADY_EXISTS",
                        f"Version aliases {sorted(taken & set(new_aliases))} are already in use.",
                    )
                if "default" in new_aliases:
                    for other in model.versions.values():
                        other.aliases = [a for a in other.aliases if a != "default"]
                version_id = str(max((int(v) for v in model.versions), default=0) + 1)
                model.versions[version_id] = ModelVersion(
                    version_id=version_id,
                    artifact_uri=artifact_uri,
                    image_uri=image,
                    labels=labels,
                    aliases=list(dict.fromkeys(new_aliases)),
                    description=spec.get("description") or "",
                    version_description=spec.get("versionDescription") or "",
                    create_time=now,
                    update_time=now,
                )
                return {"model": self.model_name(model_id), "modelVersionId": version_id}

        return self._start_operation(
            call,
            "model-upload",
            self.model_name(model_id),
            "UploadModelOperationMetadata",
            _TYPE + "UploadModelResponse",
            apply,
        )

    def _check_savedmodel_dir(self, artifact_uri: str) -> None:
        names = {n.rsplit("/", 1)[-1] for n in self._list_artifacts(artifact_uri)[1]}
        if len(names & {"saved_model.pb", "saved_model.pbtxt"}) != 1:
            raise ApiError(
                "FAILED_PRECONDITION",
                f"Model directory {artifact_uri} is expected to contain exactly one of: "
                "[saved_model.pb, saved_model.pbtxt].",
            )

    def _find_version(self, model_id: str, version: str | None) -> tuple[Model, ModelVersion]:
        model = self.models.get(model_id)
        found = model.resolve(version) if model is not None else None
        if model is None or found is None:
            name = self.model_name(model_id) + (f"@{version}" if version else "")
            raise ApiError("NOT_FOUND", f"The Model {name} does not exist.")
        return model, found

    def _get_model(self, call: _Call) -> dict[str, Any]:
        with self._lock:
            model, version = self._find_version(call.args["model"], call.args.get("version"))
            return self._model_json(model, version, call.ints)

    def _list_models(self, call: _Call) -> dict[str, Any]:
        terms = _parse_filter(call.param("filter"))
        with self._lock:
            found = [
                self._model_json(m, m.default_version(), call.ints)
                for m in self.models.values()
                if _matches(terms, m.display_name, m.default_version().labels)
            ]
        return _page(found, "models", call)

    def _list_versions(self, call: _Call) -> dict[str, Any]:
        terms = _parse_filter(call.param("filter"))
        with self._lock:
            model, _ = self._find_version(call.args["model"], None)
            found = [
                self._model_json(model, v, call.ints)
                for v in model.versions.values()
                if _matches(terms, model.display_name, v.labels)
            ]
        return _page(found, "models", call)

    def _merge_aliases(self, call: _Call) -> dict[str, Any]:
        with self._lock:
            model, target = self._find_version(call.args["model"], call.args.get("version"))
            changes = list(call.body.get("versionAliases") or [])
            for change in changes:
                alias = change.removeprefix("-")
                if not _ALIAS.match(alias):
                    raise ApiError("INVALID_ARGUMENT", f"Invalid version alias: {alias!r}.")
                if change.startswith("-") and alias == "default":
                    raise ApiError("INVALID_ARGUMENT", "The default alias cannot be removed.")
            for change in changes:
                alias = change.removeprefix("-")
                if change.startswith("-"):
                    target.aliases = [a for a in target.aliases if a != alias]
                elif alias not in target.aliases:
                    for other in model.versions.values():
                        other.aliases = [a for a in other.aliases if a != alias]
                    target.aliases.append(alias)
            target.update_time = _now()
            return self._model_json(model, target, call.ints)

    def _delete_model(self, call: _Call) -> dict[str, Any]:
        if call.args.get("version"):
            raise ApiError(
                "INVALID_ARGUMENT",
                "DeleteModel takes a model name without a version; use :deleteVersion.",
            )
        with self._lock:
            model, _ = self._find_version(call.args["model"], None)
            self._refuse_if_deployed(model, None)

        def apply() -> dict[str, Any]:
            with self._lock:
                self._refuse_if_deployed(model, None)
                self.models.pop(model.id, None)
            return {}

        return self._start_operation(
            call, "delete", self.parent, "DeleteOperationMetadata", _EMPTY, apply
        )

    def _delete_version(self, call: _Call) -> dict[str, Any]:
        with self._lock:
            model, target = self._find_version(call.args["model"], call.args["version"])
            if len(model.versions) == 1:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    "Cannot delete the only version of a model; delete the model instead.",
                )
            if "default" in target.aliases:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    "Cannot delete the default version; make another version the default first.",
                )
            self._refuse_if_deployed(model, target.version_id)

        def apply() -> dict[str, Any]:
            with self._lock:
                self._refuse_if_deployed(model, target.version_id)
                model.versions.pop(target.version_id, None)
            return {}

        return self._start_operation(
            call, "delete", self.parent, "DeleteOperationMetadata", _EMPTY, apply
        )

    def _refuse_if_deployed(self, model: Model, version_id: str | None) -> None:
        used = sorted(
            {
                self.endpoint_name(e.id)
                for e in self.endpoints.values()
                for d in e.deployed.values()
                if d.model_id == model.id and version_id in (None, d.version_id)
            }
        )
        if used:
            raise ApiError(
                "FAILED_PRECONDITION",
                f"The model {self.model_name(model.id)} is deployed to {', '.join(used)}; "
                "undeploy it first.",
            )

    # --- endpoints -----------------------------------------------------------------------------

    def _endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise ApiError("NOT_FOUND", f"Endpoint {self.endpoint_name(endpoint_id)} not found.")
        return endpoint

    def _create_endpoint(self, call: _Call) -> dict[str, Any]:
        display_name = call.body.get("displayName") or ""
        if not display_name or len(display_name) > 128:
            raise ApiError("INVALID_ARGUMENT", "Endpoint display_name must be 1-128 characters.")
        labels = _check_labels(call.body.get("labels") or {})
        endpoint_id = call.param("endpointId") or self._next_id("endpoint")
        with self._lock:
            if endpoint_id in self.endpoints:
                raise ApiError("ALREADY_EXISTS", f"Endpoint {endpoint_id} already exists.")

        def apply() -> dict[str, Any]:
            now = _now()
            description = call.body.get("description") or ""
            endpoint = Endpoint(endpoint_id, display_name, description, labels, now, now)
            with self._lock:
                self.endpoints[endpoint_id] = endpoint
                return self._endpoint_json(endpoint, ints=False)

        return self._start_operation(
            call,
            "endpoint-create",
            self.endpoint_name(endpoint_id),
            "CreateEndpointOperationMetadata",
            _TYPE + "Endpoint",
            apply,
        )

    def _get_endpoint(self, call: _Call) -> dict[str, Any]:
        with self._lock:
            return self._endpoint_json(self._endpoint(call.args["endpoint"]), call.ints)

    def _list_endpoints(self, call: _Call) -> dict[str, Any]:
        terms = _parse_filter(call.param("filter"))
        with self._lock:
            found = [
                self._endpoint_json(e, call.ints)
                for e in self.endpoints.values()
                if _matches(terms, e.display_name, e.labels)
            ]
        return _page(found, "endpoints", call)

    def _delete_endpoint(self, call: _Call) -> dict[str, Any]:
        endpoint_id = call.args["endpoint"]
        with self._lock:
            if self._endpoint(endpoint_id).deployed:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Endpoint {self.endpoint_name(endpoint_id)} has deployed models; "
                    "undeploy them first.",
                )

        def apply() -> dict[str, Any]:
            with self._lock:
                self.endpoints.pop(endpoint_id, None)
            return {}

        return self._start_operation(
            call, "delete", self.parent, "DeleteOperationMetadata", _EMPTY, apply
        )

    def _update_endpoint(self, call: _Call) -> dict[str, Any]:
        """PATCH: what ``Endpoint.update(traffic_split=..., labels=...)`` sends; no operation."""
        mask = call.param("updateMask") or ""
        paths = {_snake(p.strip()) for p in mask.split(",") if p.strip()}
        unknown = paths - {"display_name", "description", "labels", "traffic_split"}
        if unknown or not paths:
            raise ApiError("INVALID_ARGUMENT", f"Unsupported update_mask: {mask!r}.")
        body = call.body
        with self._lock:
            endpoint = self._endpoint(call.args["endpoint"])
            split = endpoint.traffic_split
            if "traffic_split" in paths:
                split = _check_split(body.get("trafficSplit") or {}, set(endpoint.deployed))
            labels = endpoint.labels
            if "labels" in paths:
                labels = _check_labels(body.get("labels") or {})
            if "display_name" in paths:
                if not body.get("displayName"):
                    raise ApiError("INVALID_ARGUMENT", "display_name must not be empty.")
                endpoint.display_name = body["displayName"]
            if "description" in paths:
                endpoint.description = body.get("description") or ""
            endpoint.traffic_split, endpoint.labels = split, labels
            endpoint.update_time = _now()
            return self._endpoint_json(endpoint, call.ints)

    def _deploy(self, call: _Call) -> dict[str, Any]:
        spec = call.body.get("deployedModel")
        if not isinstance(spec, dict) or not spec.get("model"):
            raise ApiError("INVALID_ARGUMENT", "deployed_model.model must be set.")
        model_id = _model_id(spec["model"])
        version = spec["model"].split("@", 1)[1] if "@" in spec["model"] else None
        resources = spec.get("dedicatedResources")
        if not isinstance(resources, dict):
            raise ApiError(
                "INVALID_ARGUMENT",
                "This model does not support automatic resources; "
                "deployed_model.dedicated_resources must be set.",
            )
        machine = resources.get("machineSpec") or {}
        machine_type = machine.get("machineType") or ""
        if not _MACHINE_TYPE.match(machine_type):
            raise ApiError("INVALID_ARGUMENT", f'Machine type "{machine_type}" is not supported.')
        accelerator = machine.get("acceleratorType")
        if isinstance(accelerator, int):
            accelerator = _ACCELERATOR_NAMES.get(accelerator, str(accelerator))
        if accelerator in (None, "ACCELERATOR_TYPE_UNSPECIFIED"):
            accelerator = None
        elif accelerator not in _ACCELERATORS:
            raise ApiError("INVALID_ARGUMENT", f"Unknown accelerator type {accelerator}.")
        accelerator_count = int(machine.get("acceleratorCount") or 0)
        if accelerator and accelerator_count < 1:
            raise ApiError("INVALID_ARGUMENT", "accelerator_count must be at least 1.")
        min_replicas = int(resources.get("minReplicaCount") or 0)
        max_replicas = int(resources.get("maxReplicaCount") or min_replicas)
        if min_replicas < 1:
            raise ApiError(
                "INVALID_ARGUMENT", "dedicated_resources.min_replica_count must be at least 1."
            )
        if max_replicas < min_replicas:
            raise ApiError(
                "INVALID_ARGUMENT", "max_replica_count must not be less than min_replica_count."
            )
        with self._lock:
            endpoint = self._endpoint(call.args["endpoint"])
            model, target = self._find_version(model_id, version)
            split = call.body.get("trafficSplit") or {}
            if split:
                split = _check_split(split, {*endpoint.deployed, "0"})
        deployed_id = self._next_id("deployed")

        def apply() -> dict[str, Any]:
            self._load(model.id, target)  # the model server must come up before it serves
            with self._lock:
                if endpoint.id not in self.endpoints:
                    raise ApiError("NOT_FOUND", f"Endpoint {endpoint.id} was deleted.")
                deployed = DeployedModel(
                    id=deployed_id,
                    model_id=model.id,
                    version_id=target.version_id,
                    display_name=spec.get("displayName") or model.display_name,
                    machine_type=machine_type,
                    min_replicas=min_replicas,
                    max_replicas=max_replicas,
                    accelerator_type=accelerator,
                    accelerator_count=accelerator_count,
                    service_account=spec.get("serviceAccount") or "",
                    create_time=_now(),
                )
                endpoint.deployed[deployed_id] = deployed
                if split:
                    endpoint.traffic_split = {
                        (deployed_id if k == "0" else k): v
                        for k, v in split.items()
                        if k == "0" or k in endpoint.deployed
                    }
                endpoint.update_time = _now()
                return {"deployedModel": self._deployed_json(deployed, ints=False)}

        return self._start_operation(
            call,
            "deploy",
            self.endpoint_name(endpoint.id),
            "DeployModelOperationMetadata",
            _TYPE + "DeployModelResponse",
            apply,
        )

    def _undeploy(self, call: _Call) -> dict[str, Any]:
        deployed_id = str(call.body.get("deployedModelId") or "")
        with self._lock:
            endpoint = self._endpoint(call.args["endpoint"])
            if deployed_id not in endpoint.deployed:
                raise ApiError(
                    "NOT_FOUND",
                    f"Deployed model {deployed_id} not found on {self.endpoint_name(endpoint.id)}.",
                )
            split = _split_after_undeploy(endpoint, deployed_id, call.body.get("trafficSplit"))

        def apply() -> dict[str, Any]:
            with self._lock:
                endpoint.deployed.pop(deployed_id, None)
                endpoint.traffic_split = {k: v for k, v in split.items() if k in endpoint.deployed}
                endpoint.update_time = _now()
            return {}

        return self._start_operation(
            call,
            "undeploy",
            self.endpoint_name(endpoint.id),
            "UndeployModelOperationMetadata",
            _TYPE + "UndeployModelResponse",
            apply,
        )

    def _mutate(self, call: _Call) -> dict[str, Any]:
        """``:mutateDeployedModel``: new replica counts for a deployed model (not traffic)."""
        spec = call.body.get("deployedModel") or {}
        resources = spec.get("dedicatedResources") or {}
        with self._lock:
            endpoint = self._endpoint(call.args["endpoint"])
            deployed = endpoint.deployed.get(str(spec.get("id") or ""))
            if deployed is None:
                raise ApiError("NOT_FOUND", f"Deployed model {spec.get('id')} not found.")
            min_replicas = int(resources.get("minReplicaCount") or deployed.min_replicas)
            max_replicas = int(resources.get("maxReplicaCount") or min_replicas)
            if min_replicas < 1 or max_replicas < min_replicas:
                raise ApiError("INVALID_ARGUMENT", "Invalid replica counts.")
        found = deployed

        def apply() -> dict[str, Any]:
            with self._lock:
                found.min_replicas, found.max_replicas = min_replicas, max_replicas
                return {"deployedModel": self._deployed_json(found, ints=False)}

        return self._start_operation(
            call,
            "mutate",
            self.endpoint_name(endpoint.id),
            "MutateDeployedModelOperationMetadata",
            _TYPE + "MutateDeployedModelResponse",
            apply,
        )

    # --- predictions ---------------------------------------------------------------------------

    def _predict(self, call: _Call) -> dict[str, Any]:
        with self._lock:
            endpoint = self._endpoint(call.args["endpoint"])
            choices = [(k, v) for k, v in endpoint.traffic_split.items() if v > 0]
            if not choices:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Endpoint {self.endpoint_name(endpoint.id)} has no deployed model "
                    "receiving traffic.",
                )
            pick = self._random.choices([k for k, _ in choices], [v for _, v in choices])[0]
            deployed = endpoint.deployed[pick]
            model = self.models[deployed.model_id]
            version = model.versions[deployed.version_id]
        instances = call.body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise ApiError("INVALID_ARGUMENT", "instances must be a non-empty list.")
        loaded = self._load(model.id, version)
        from tfdeploy.errors import TfdeployError

        try:
            answer = loaded.predict({"instances": instances})
        except TfdeployError as exc:  # the model server's own 400, wrapped as Vertex does
            raise ApiError("INVALID_ARGUMENT", json.dumps({"error": str(exc)})) from exc
        return {
            "predictions": answer["predictions"],
            "deployedModelId": deployed.id,
            "model": self.model_name(model.id),
            "modelDisplayName": model.display_name,
            "modelVersionId": version.version_id,
        }

    def _load(self, model_id: str, version: ModelVersion) -> Any:
        """The version's SavedModel, downloaded from GCS and loaded once."""
        key = (model_id, version.version_id)
        with self._load_lock:
            if key in self._loaded:
                return self._loaded[key]
            target = self._artifacts / f"{model_id}-{version.version_id}"
            shutil.rmtree(target, ignore_errors=True)
            try:
                bucket, names = self._list_artifacts(version.artifact_uri)
                prefix = _gcs_prefix(version.artifact_uri)
                for name in names:
                    dest = target / name[len(prefix) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    bucket.blob(name).download_to_filename(str(dest))
                from tfdeploy import load_savedmodel

                loaded = load_savedmodel(target)
            except Exception as exc:  # any failure to fetch or load: the server never comes up
                status, message = _FAILED_OPERATION_DEFAULTS["deploy"]
                raise ApiError(status, f"{message} ({type(exc).__name__}: {exc})") from exc
            self._loaded[key] = loaded
            return loaded

    def _list_artifacts(self, artifact_uri: str) -> tuple[Any, list[str]]:
        if not artifact_uri.startswith("gs://"):
            raise ApiError(
                "INVALID_ARGUMENT", f"artifact_uri must be a gs:// URI: {artifact_uri!r}"
            )
        from google.api_core import exceptions

        bucket_name = artifact_uri[5:].split("/", 1)[0]
        bucket = self._storage().bucket(bucket_name)
        try:
            names = [b.name for b in bucket.list_blobs(prefix=_gcs_prefix(artifact_uri))]
        except exceptions.NotFound as exc:
            raise ApiError(
                "FAILED_PRECONDITION", f"Cloud Storage bucket {bucket_name} does not exist."
            ) from exc
        return bucket, [n for n in names if not n.endswith("/")]

    def _storage(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage  # type: ignore[attr-defined]

        options = {"api_endpoint": self.gcs_upstream} if self.gcs_upstream else None
        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=options,
        )

    # --- dispatch ------------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str | None, Any, str]:
        """(fault step, path match or None, handler name) of an API request."""
        match = _LOCATION.match(urllib.parse.unquote(path))
        if match is None:
            return None, None, ""
        rest = match.group("rest") or ""
        for route_method, pattern, step, name in _ROUTES:
            found = re.fullmatch(pattern, rest)
            if route_method == method and found:
                if match.group("api") == "ui" and step != "operation":
                    break
                return step, (match, found), name
        return None, None, ""

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        raw: bytes,
        fault: Fault | None,
    ) -> dict[str, Any]:
        _, matched, name = self._route(method, path)
        if matched is None:
            raise ApiError("NOT_FOUND", f"The requested URL {path} was not found on this server.")
        location, found = matched
        if location.group("project") not in (self.project, self.project_number):
            raise ApiError(
                "PERMISSION_DENIED",
                f"Permission denied on resource project {location.group('project')}.",
            )
        if location.group("location") != self.location:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Location {location.group('location')} does not match the location "
                f"{self.location} of this service endpoint.",
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ApiError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received: not an object.")
        args = {k: v for k, v in found.groupdict().items() if v is not None}
        ints = "enum-encoding=int" in (query.get("$alt") or [""])[0]
        answer: dict[str, Any] = getattr(self, name)(_Call(args, body, query, ints, fault))
        return answer


_LOCATION = re.compile(
    r"^/(?P<api>v1|ui)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/:]+)"
    r"(?:/(?P<rest>.*))?$"
)
_MODEL = r"models/(?P<model>[^/@:]+)(?:@(?P<version>[^/:]+))?"
_ENDPOINT = r"endpoints/(?P<endpoint>[^/:]+)"
_OPERATION = r"(?P<operation>(?:(?:endpoints|models)/[^/:]+/)?operations/[^/:]+)"
# (method, path after the location, fault step, handler)
_ROUTES: tuple[tuple[str, str, str | None, str], ...] = (
    ("POST", r"models:upload", "model-upload", "_upload_model"),
    ("GET", r"models", None, "_list_models"),
    ("GET", _MODEL, None, "_get_model"),
    ("DELETE", _MODEL, "delete", "_delete_model"),
    ("GET", _MODEL + r":listVersions", None, "_list_versions"),
    ("DELETE", _MODEL + r":deleteVersion", "delete", "_delete_version"),
    ("POST", _MODEL + r":mergeVersionAliases", None, "_merge_aliases"),
    ("POST", r"endpoints", "endpoint-create", "_create_endpoint"),
    ("GET", r"endpoints", None, "_list_endpoints"),
    ("GET", _ENDPOINT, None, "_get_endpoint"),
    ("DELETE", _ENDPOINT, "delete", "_delete_endpoint"),
    ("PATCH", _ENDPOINT, "traffic", "_update_endpoint"),
    ("POST", _ENDPOINT + r":deployModel", "deploy", "_deploy"),
    ("POST", _ENDPOINT + r":undeployModel", "undeploy", "_undeploy"),
    ("POST", _ENDPOINT + r":mutateDeployedModel", "mutate", "_mutate"),
    ("POST", _ENDPOINT + r":predict", "predict", "_predict"),
    ("GET", _OPERATION, "operation", "_get_operation"),
)

_GCS_PREFIXES = ("/storage/", "/upload/", "/download/", "/batch/")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer"}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeVertex
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`FakeVertex.requests` instead."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.owner
        path, _, query_string = self.path.partition("?")
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        raw = self._read_body()
        gcs = path.startswith(_GCS_PREFIXES)
        if gcs:
            step = "upload" if path.startswith("/upload/") and self.command != "GET" else None
        else:
            step = fake._route(self.command, path)[0]
        record = RequestRecord(self.command, path, query, len(raw), step)
        with fake._lock:
            fake.requests.append(record)
        fault = fake._take_fault(step, ("500", "503", "429", "drop", "drop-after"))
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        if fault is not None and fault.kind in _HTTP_FAULTS:
            name, message = _HTTP_FAULTS[fault.kind]
            error = ApiError(fault.status or name, fault.message or message)
            self._send(record, error.http_status, _json_bytes(error.body()), [])
            return
        if gcs:
            status, data, headers = self._forward(raw)
        else:
            status, data, headers = self._answer_api(path, query, raw, step)
        if fault is not None:  # drop-after: the change is made, the answer is lost
            if not gcs and status == 200:
                with fake._lock:
                    op = fake._operations.get(json.loads(data).get("name", ""))
                if op is not None:  # nobody will poll it: it finishes on its own
                    fake._finish(op)
            self._drop()
            return
        self._send(record, status, data, headers)

    def _answer_api(
        self, path: str, query: dict[str, list[str]], raw: bytes, step: str | None
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        fake = self.owner
        if step == "predict" and len(raw) > PREDICT_BODY_LIMIT:
            error = ApiError(
                "INVALID_ARGUMENT",
                f"Request payload size exceeds the limit: {PREDICT_BODY_LIMIT} bytes.",
            )
            return error.http_status, _json_bytes(error.body()), []
        op_fault = fake._take_fault(step, ("failed-operation",)) if step in _LRO_STEPS else None
        try:
            answer = fake._answer(self.command, path, query, raw, op_fault)
        except ApiError as exc:
            if op_fault is not None:  # no operation was started: the fault waits for the next
                with fake._lock:
                    op_fault.remaining += 1
            return exc.http_status, _json_bytes(exc.body()), []
        except Exception as exc:  # a bug in the fake: answer as Google's frontend would
            error = ApiError("INTERNAL", f"fake_vertex: {type(exc).__name__}: {exc}")
            return error.http_status, _json_bytes(error.body()), []
        return 200, _json_bytes(answer), []

    def _forward(self, raw: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Pass a Cloud Storage request to the emulator; return its answer."""
        upstream = self.owner.gcs_upstream
        if upstream is None:
            error = ApiError("NOT_FOUND", "This fake has no Cloud Storage upstream.")
            return error.http_status, _json_bytes(error.body()), []
        parsed = urllib.parse.urlsplit(upstream)
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60)
        try:
            # The Host header goes through unchanged: the emulator builds resumable-upload
            # URLs from it, so they point back at this front.
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(raw))
            conn.request(self.command, self.path, body=raw, headers=headers)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, data, kept
        finally:
            conn.close()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, record: RequestRecord, status: int, data: bytes, headers: list[tuple[str, str]]
    ) -> None:
        record.status = status
        self.send_response(status)
        if not any(k.lower() == "content-type" for k, _ in headers):
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# --- helpers ------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _etag(*parts: str) -> str:
    return "AMEw9yP" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _model_id(name: str) -> str:
    match = re.fullmatch(r"(?:projects/[^/]+/locations/[^/]+/models/)?([^/@]+)(?:@.+)?", name)
    if match is None:
        raise ApiError("INVALID_ARGUMENT", f"Invalid model name: {name}.")
    return match.group(1)


def _gcs_prefix(artifact_uri: str) -> str:
    rest = artifact_uri[5:].split("/", 1)
    return (rest[1].rstrip("/") + "/") if len(rest) > 1 and rest[1] else ""


def _check_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, dict):
        raise ApiError("INVALID_ARGUMENT", "labels must be a map of strings.")
    if len(labels) > 64:
        raise ApiError("INVALID_ARGUMENT", "At most 64 labels are allowed.")
    for key, value in labels.items():
        if not isinstance(value, str) or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid label {key!r}: {value!r}. Label keys and values can be no longer than "
                "63 characters, can only contain lowercase letters, numeric characters, "
                "underscores and dashes, and keys must start with a letter.",
            )
    return dict(labels)


def _check_split(split: Any, allowed: set[str]) -> dict[str, int]:
    """A traffic split: known deployed model ids, percentages adding up to 100 (or empty)."""
    if not isinstance(split, dict):
        raise ApiError("INVALID_ARGUMENT", "traffic_split must be a map.")
    out: dict[str, int] = {}
    for key, value in split.items():
        if key not in allowed:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid traffic split: deployed model {key} is not deployed to the endpoint.",
            )
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise ApiError("INVALID_ARGUMENT", f"Invalid traffic percentage {value!r} for {key}.")
        out[key] = value
    if out and sum(out.values()) != 100:
        raise ApiError(
            "INVALID_ARGUMENT",
            f"The traffic split percentages must add up to 100, not {sum(out.values())}.",
        )
    return out


def _split_after_undeploy(endpoint: Endpoint, deployed_id: str, requested: Any) -> dict[str, int]:
    """The endpoint's split once ``deployed_id`` is gone, or an error if that would drop traffic."""
    remaining = set(endpoint.deployed) - {deployed_id}
    if not remaining:
        return {}
    if requested:
        if not isinstance(requested, dict) or requested.get(deployed_id, 0):
            raise ApiError(
                "FAILED_PRECONDITION",
                f"The traffic split gives traffic to deployed model {deployed_id}, which is "
                "being undeployed.",
            )
        return _check_split({k: v for k, v in requested.items() if k != deployed_id}, remaining)
    share = endpoint.traffic_split.get(deployed_id, 0)
    if share:
        raise ApiError(
            "FAILED_PRECONDITION",
            f"Deployed model {deployed_id} receives {share}% of the traffic: give it to the "
            "other deployed models with traffic_split to undeploy it.",
        )
    return {k: v for k, v in endpoint.traffic_split.items() if k != deployed_id}


_FILTER_TERM = re.compile(
    r"""^\s*(?:
        (?P<field>display_name|displayName|labels\.(?P<key>[a-z][a-z0-9_-]*))\s*=\s*
            (?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"]+))
      | labels\.(?P<haskey>[a-z][a-z0-9_-]*)\s*:\s*\*
      | labels\s*:\s*(?P<haskey2>[a-z][a-z0-9_-]*)
    )\s*$""",
    re.VERBOSE,
)


def _parse_filter(text: str | None) -> list[tuple[str, str | None, str | None]]:
    """``t AND t ...`` with t one of ``display_name="x"``, ``labels.k="v"``, ``labels.k:*``."""
    if not text or not text.strip():
        return []
    terms: list[tuple[str, str | None, str | None]] = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _FILTER_TERM.match(part)
        if match is None:
            raise ApiError("INVALID_ARGUMENT", f"Unsupported filter: {text!r}.")
        value = match.group("quoted") if match.group("quoted") is not None else match.group("bare")
        if match.group("key"):
            terms.append(("label", match.group("key"), value))
        elif match.group("field"):
            terms.append(("display_name", None, value))
        else:
            terms.append(("has_label", match.group("haskey") or match.group("haskey2"), None))
    return terms


def _matches(
    terms: list[tuple[str, str | None, str | None]], display_name: str, labels: dict[str, str]
) -> bool:
    for kind, key, value in terms:
        if kind == "display_name" and display_name != value:
            return False
        if kind == "label" and labels.get(key or "") != value:
            return False
        if kind == "has_label" and key not in labels:
            return False
    return True


def _page(items: list[dict[str, Any]], key: str, call: _Call) -> dict[str, Any]:
    size = int(call.param("pageSize") or 0) or 100
    start = int(call.param("pageToken") or 0)
    body: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return body
