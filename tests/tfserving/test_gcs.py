"""gs:// model base paths through google-cloud-storage, against gcp-storage-emulator."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from tfdeploy_tfserving import TFServingConfig, TFServingTarget

from tfdeploy.deployment.target import Progress
from tfdeploy.model.bundle import Bundle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def bucket(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    monkeypatch_module.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    yield client.create_bucket("models")
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def gcs_target(
    model_name: str, progress: Progress | None = None, **settings: Any
) -> TFServingTarget:
    config = TFServingConfig(base_path="gs://models/serving", **settings)
    return TFServingTarget(config, name="gcs", model_name=model_name, progress=progress)


def names(bucket: Any, prefix: str) -> list[str]:
    return sorted(b.name for b in bucket.client.list_blobs(bucket, prefix=prefix))


def test_versions_land_whole_under_the_prefix_and_a_redeploy_uploads_nothing(
    bucket: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    target = gcs_target("gcsdigits")
    assert target.status().state == "absent"
    assert target.plan(digits_bundle).action == "create"
    first = target.deploy(digits_bundle)
    assert first.changed and first.bytes_sent == digits_bundle.manifest.size_bytes
    stored = names(bucket, "serving/gcsdigits/")
    assert "serving/gcsdigits/1/saved_model.pb" in stored
    assert "serving/gcsdigits/1/assets.extra/tfdeploy.json" in stored
    assert not [n for n in stored if ".tfdeploy-staging" in n]
    assert target.plan(digits_bundle).action == "noop"
    again = target.deploy(digits_bundle)
    assert not again.changed and again.bytes_sent == 0
    assert names(bucket, "serving/gcsdigits/") == stored
    second = target.deploy(digits_bundle_changed)
    assert second.status.version == "2"
    assert target.status().digest == digits_bundle_changed.manifest.digest
    rolled = target.rollback()
    assert (rolled.version, rolled.digest) == ("1", digits_bundle.manifest.digest)
    assert not [
        n for n in names(bucket, "serving/gcsdigits/") if n.startswith("serving/gcsdigits/2/")
    ]


class Interrupt(Progress):
    def advance(self, done: int, total: int) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_upload_leaves_no_version(bucket: Any, digits_bundle: Bundle) -> None:
    with pytest.raises(KeyboardInterrupt):
        gcs_target("gcsinterrupted", progress=Interrupt()).deploy(digits_bundle)
    assert names(bucket, "serving/gcsinterrupted/") == []
    assert gcs_target("gcsinterrupted").status().state == "absent"
    assert gcs_target("gcsinterrupted").deploy(digits_bundle).status.version == "1"


def test_the_model_config_file_can_live_in_the_bucket(bucket: Any, digits_bundle: Bundle) -> None:
    target = gcs_target(
        "gcslabels", model_config_file="gs://models/serving/models.config", label="canary"
    )
    target.deploy(digits_bundle)
    text = bucket.blob("serving/models.config").download_as_text()
    assert 'base_path: "gs://models/serving/gcslabels"' in text
    assert 'key: "canary"' in text and "value: 1" in text
    assert target.status().versions[0].labels == ("canary",)


def test_a_pbtxt_savedmodel_deploys_and_redeploys_to_gcs(
    bucket: Any, half_plus_two_pbtxt: Any, tmp_path: Any
) -> None:
    from tfdeploy_tfserving.storage import files_to_copy

    from tfdeploy.model.bundle import package

    # saved_model.pbtxt marks a whole version as saved_model.pb does: copied last.
    assert files_to_copy(half_plus_two_pbtxt)[-1].name == "saved_model.pbtxt"
    bundle = package(half_plus_two_pbtxt, name="hp2", output_dir=tmp_path)
    target = gcs_target("gcspbtxt")
    assert target.deploy(bundle).status.version == "1"
    assert "serving/gcspbtxt/1/saved_model.pbtxt" in names(bucket, "serving/gcspbtxt/")
    # A second deploy does not take version 1 for a partial upload and remove it.
    assert not target.deploy(bundle).changed
    assert target.status().digest == bundle.manifest.digest
