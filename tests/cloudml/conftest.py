"""Vertex AI test set-up: gcp-storage-emulator, the fake Vertex AI API in front of it, the SDK.

Cloud Storage requests go to the fake, which forwards them to the emulator
(``STORAGE_EMULATOR_HOST`` points at the fake), so that tests can inject faults into uploads
as into every Vertex AI call. The servers live as long as this test package (package scope),
so that ``STORAGE_EMULATOR_HOST`` does not leak into the tests of other packages.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tfdeploy.plugin import Progress

from .fake_vertex import FakeVertex

#: The prebuilt TensorFlow serving container the tests upload models with.
TF_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
STAGING_BUCKET = "tfdeploy-staging"


def quiet_aiplatform_logging() -> None:
    """Keep google-cloud-aiplatform's INFO chatter off stdout.

    Its module loggers each add a ``StreamHandler(sys.stdout)`` at import unless a logger above
    them already has a StreamHandler. Giving ``google.cloud.aiplatform`` one (on stderr, for
    warnings only) before the SDK is imported stops that.
    """
    logger = logging.getLogger("google.cloud.aiplatform")
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


quiet_aiplatform_logging()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="package")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator, in memory, in this process; yields its URL."""
    from gcp_storage_emulator.server import create_server  # type: ignore[import-untyped]

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="package")
def fake_vertex(gcs_emulator: str) -> Iterator[FakeVertex]:
    """The fake Vertex AI API (operations done after 2 polls), also fronting the emulator."""
    with pytest.MonkeyPatch.context() as mp, FakeVertex(gcs_upstream=gcs_emulator) as fake:
        mp.setenv("STORAGE_EMULATOR_HOST", fake.url)
        yield fake


@pytest.fixture
def vertex(fake_vertex: FakeVertex) -> Iterator[FakeVertex]:
    """The package's fake, checked afterwards to have used up every fault the test injected.

    Its operations finish at the first poll: the SDK still sees them running in the answer
    that starts them and polls, but never sleeps between polls (0-1 s each otherwise). Tests
    about polling set ``polls_to_finish`` themselves.
    """
    fake_vertex.polls_to_finish = 1
    yield fake_vertex
    left = fake_vertex.pending_faults()
    fake_vertex.clear_faults()
    fake_vertex.polls_to_finish = 2
    assert not left, f"faults never injected: {left}"


@pytest.fixture(scope="package")
def aiplatform(fake_vertex: FakeVertex) -> Any:
    """``google.cloud.aiplatform``, initialised to talk REST to the fake, anonymously."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform as sdk

    sdk.init(
        project=fake_vertex.project,
        location=fake_vertex.location,
        api_endpoint=fake_vertex.url,
        api_transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        staging_bucket=f"gs://{STAGING_BUCKET}",
    )
    return sdk


@pytest.fixture(scope="package")
def storage_client(fake_vertex: FakeVertex) -> Any:
    """A google-cloud-storage client reaching the emulator through ``STORAGE_EMULATOR_HOST``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    return storage.Client(
        project=fake_vertex.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )


@pytest.fixture(scope="package")
def staging_bucket(storage_client: Any) -> Any:
    """The bucket models are staged in."""
    return storage_client.create_bucket(STAGING_BUCKET)


def stage(bucket: Any, local_dir: Path, prefix: str) -> str:
    """Upload a directory under ``prefix``; returns its ``gs://`` URI."""
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            bucket.blob(f"{prefix}/{path.relative_to(local_dir).as_posix()}").upload_from_filename(
                str(path)
            )
    return f"gs://{bucket.name}/{prefix}"


@pytest.fixture(scope="package")
def digits_uri(staging_bucket: Any, digits_savedmodel: Path) -> str:
    """The digits SavedModel staged in the emulator."""
    return stage(staging_bucket, digits_savedmodel, "digits/1")


@pytest.fixture(scope="package")
def digits_changed_uri(staging_bucket: Any, digits_savedmodel_changed: Path) -> str:
    """The changed digits SavedModel (same predictions, another digest) staged in the emulator."""
    return stage(staging_bucket, digits_savedmodel_changed, "digits/2")


def fake_settings(fake: FakeVertex, **settings: Any) -> dict[str, Any]:
    """A cloudml target's settings for the fake: anonymous, no pause between polls."""
    base: dict[str, Any] = {
        "project": fake.project,
        "region": fake.location,
        "staging_bucket": f"gs://{STAGING_BUCKET}",
        "api_endpoint": fake.url,
        "anonymous": True,
        "poll_interval": 0,
    }
    return {k: v for k, v in {**base, **settings}.items() if v is not None}


def cloudml_config(fake: FakeVertex, **settings: Any) -> Any:
    """The typed settings of a cloudml target talking to the fake (see :func:`fake_settings`)."""
    from tfdeploy_cloudml import CloudMLConfig

    return CloudMLConfig(**fake_settings(fake, **settings))


@pytest.fixture
def make_cloudml(vertex: FakeVertex, staging_bucket: Any) -> Any:
    """``make(model_name, progress=None, **settings)``: a cloudml target against the fake."""
    from tfdeploy_cloudml import CloudMLTarget

    made: list[Any] = []

    def make(model_name: str, progress: Any = None, **settings: Any) -> Any:
        target = CloudMLTarget(
            cloudml_config(vertex, **settings),
            name="cloudml",
            model_name=model_name,
            progress=progress,
        )
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()


class Recorder(Progress):
    """A Progress that remembers what a target (and the retries around it) reported."""

    def __init__(self) -> None:
        self.retries: list[str] = []
        self.steps: list[str] = []
        self.advances: list[tuple[int, int]] = []
        self.heartbeats: list[float] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def advance(self, done: int, total: int) -> None:
        self.advances.append((done, total))

    def log(self, line: str) -> None:
        self.steps.append(line)

    def heartbeat(self, waited: float) -> None:
        self.heartbeats.append(waited)

    def retrying(self, message: str, delay: float) -> None:
        self.retries.append(message)


def serving(fake: FakeVertex, endpoint_name: str) -> dict[tuple[str, str], int]:
    """What an endpoint serves: {(model id, version id): traffic percent} for shares above 0."""
    try:
        endpoint = fake.endpoint_named(endpoint_name)
    except LookupError:
        return {}
    out: dict[tuple[str, str], int] = {}
    for deployed_id, share in endpoint.traffic_split.items():
        if share > 0:
            d = endpoint.deployed[deployed_id]
            out[(d.model_id, d.version_id)] = share
    return out


def deployed(fake: FakeVertex, endpoint_name: str) -> list[tuple[str, str]]:
    """Every deployment of an endpoint, with or without traffic: [(model id, version id)]."""
    try:
        endpoint = fake.endpoint_named(endpoint_name)
    except LookupError:
        return []
    return sorted((d.model_id, d.version_id) for d in endpoint.deployed.values())
