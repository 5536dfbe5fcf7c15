"""The validation checks the cloudml target adds, and status when Vertex AI cannot be reached."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
import tfdeploy_cloudml
from tfdeploy_cloudml import checks, containers
from tfdeploy_cloudml.config import CloudMLConfig

import tfdeploy
from tfdeploy.plugin import Check, ModelInfo, RemoteError, TfdeployError, read_model_info

from .conftest import fake_settings
from .fake_vertex import FakeVertex


def settings(**extra: Any) -> CloudMLConfig:
    return CloudMLConfig(project="my-project", staging_bucket="gs://bucket", **extra)


@pytest.fixture(scope="module")
def digits_info(digits_savedmodel: Path) -> ModelInfo:
    return read_model_info(digits_savedmodel)


def written_by(info: ModelInfo, version: str) -> ModelInfo:
    graphs = tuple(dataclasses.replace(g, tensorflow_version=version) for g in info.meta_graphs)
    return dataclasses.replace(info, meta_graphs=graphs)


def run(config: CloudMLConfig, info: ModelInfo) -> dict[str, Check]:
    return {c.name: c for check in checks.for_config(config) for c in check(info)}


def test_the_hook_adds_three_checks_to_cloudml_targets_only(make_cloudml: Any) -> None:
    from tfdeploy_example import ExampleConfig, ExampleTarget

    found = tfdeploy_cloudml.target_checks(make_cloudml("checked"))
    assert found is not None and len(found) == 3
    other = ExampleTarget(ExampleConfig(path="/tmp"), name="ex", model_name="m")
    assert tfdeploy_cloudml.target_checks(other) is None


def test_a_model_from_a_tensorflow_newer_than_every_image_gets_the_newest_older_one_and_a_warning(
    digits_info: ModelInfo,
) -> None:
    newest = max(containers.prebuilt("us-central1", False))
    future = f"{newest[0]}.{newest[1] + 6}.0"
    found = run(settings(), written_by(digits_info, future))
    container = found["cloudml: TensorFlow version of the serving container"]
    assert container.status == "WARN"
    assert f"tf2-cpu.{newest[0]}-{newest[1]}" in container.reason
    assert "newest older one" in container.reason
    assert "serving_container_image" in (container.fix or "")
    assert found["cloudml: serving_default signature"].status == "PASS"
    assert found["cloudml: model size"].status == "PASS"
    choice = containers.choose(future, "us-central1")
    assert (choice.exact, choice.image_version) == (False, newest)


def test_a_model_whose_version_has_an_image_gets_it(digits_info: ModelInfo) -> None:
    for region, registry in [
        ("us-central1", "us"),
        ("europe-west4", "europe"),
        ("asia-east1", "asia"),
    ]:
        found = run(settings(region=region), written_by(digits_info, "2.12.1"))
        container = found["cloudml: TensorFlow version of the serving container"]
        assert container.status == "PASS"
        assert (
            f"{registry}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-12:latest"
            in container.reason
        )
    gpu = containers.choose("2.12.1", "us-central1", gpu=True)
    assert gpu.image.endswith("/tf2-gpu.2-12:latest") and gpu.exact


def test_an_explicit_image_is_checked_against_the_model(digits_info: ModelInfo) -> None:
    info = written_by(digits_info, "2.15.0")
    older = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-11:latest"
    container = run(settings(serving_container_image=older), info)
    assert container["cloudml: TensorFlow version of the serving container"].status == "WARN"
    newer = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    container = run(settings(serving_container_image=newer), info)
    assert container["cloudml: TensorFlow version of the serving container"].status == "PASS"
    custom = run(settings(serving_container_image="gcr.io/me/my-server:1"), info)
    check = custom["cloudml: TensorFlow version of the serving container"]
    assert check.status == "PASS" and "not checked" in check.reason


def test_an_unknown_tensorflow_version_is_a_warning(digits_info: ModelInfo) -> None:
    found = run(settings(), written_by(digits_info, ""))
    assert found["cloudml: TensorFlow version of the serving container"].status == "WARN"


def test_a_model_without_serving_default_or_too_large_fails(digits_info: ModelInfo) -> None:
    graphs = tuple(
        dataclasses.replace(g, signatures={"predict": g.signatures["serving_default"]})
        for g in digits_info.meta_graphs
    )
    found = run(
        settings(),
        dataclasses.replace(digits_info, meta_graphs=graphs, size_bytes=checks.MAX_MODEL_BYTES + 1),
    )
    signature = found["cloudml: serving_default signature"]
    assert signature.status == "FAIL" and "predict" in signature.reason
    assert found["cloudml: model size"].status == "FAIL"


def test_a_deploy_stops_at_a_failed_check_before_anything_is_sent(
    vertex: FakeVertex,
    staging_bucket: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    digits_savedmodel: Path,
) -> None:
    monkeypatch.setattr(checks, "MAX_MODEL_BYTES", 1000)
    start = len(vertex.requests)
    with pytest.raises(TfdeployError, match="cloudml: model size"):
        tfdeploy.deploy(
            digits_savedmodel,
            target="cloudml",
            name="toolarge",
            overrides=fake_settings(vertex),
        )
    assert [r for r in vertex.requests[start:] if r.method != "GET"] == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_status_of_an_unreachable_service_is_an_error_at_once_not_unknown(
    vertex: FakeVertex, make_cloudml: Any
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    target = make_cloudml("unreachable", api_endpoint=url)
    with pytest.raises(
        RemoteError, match=f"cannot reach Vertex AI at {url}: connection refused"
    ) as raised:
        target.status()
    # A refused connection is known at once: not retried for a minute before saying so.
    assert raised.value.code == "UNAVAILABLE" and not raised.value.retryable


def test_status_before_a_deploy_names_the_missing_endpoint(
    vertex: FakeVertex, make_cloudml: Any
) -> None:
    status = make_cloudml("never", endpoint="never-made").status()
    assert (status.state, status.url, status.versions) == ("absent", None, ())
    assert "no endpoint 'never-made'" in (status.detail or "")


def test_staging_into_a_missing_bucket_says_how_to_make_it(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Any
) -> None:
    target = make_cloudml("nobucket", staging_bucket="gs://no-such-bucket-here/models")
    with pytest.raises(TfdeployError, match="gs://no-such-bucket-here does not exist") as raised:
        target.deploy(digits_bundle)
    assert "gcloud storage buckets create" in (raised.value.hint or "")
    assert vertex.models_named("nobucket") == []


def test_the_images_read_from_the_sdk_file_are_the_sdk_s_list(aiplatform: Any) -> None:
    from google.cloud.aiplatform.constants import prediction

    assert set(containers._listed_uris()) >= set(prediction.TF_CONTAINER_URIS)
    for uri in containers._listed_uris():
        assert uri in prediction.TF_CONTAINER_URIS or containers.image_version(uri) is None
