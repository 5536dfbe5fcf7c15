"""Deploying to the fake Vertex AI through the real google-cloud-aiplatform and -storage clients."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from tfdeploy.plugin import Bundle, ConfigError, TargetError

from .conftest import STAGING_BUCKET, Recorder, deployed, serving
from .fake_vertex import FakeVertex

_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def api_calls(fake: FakeVertex, start: int) -> list[str]:
    """The steps of the requests since ``start`` that change something."""
    return [r.step for r in fake.requests[start:] if r.step and r.step not in ("operation",)]


def test_a_first_deploy_stages_uploads_creates_deploys_and_serves(
    vertex: FakeVertex,
    make_cloudml: Any,
    digits_bundle: Bundle,
    digits_model: Any,
    digits_instances: list[Any],
    storage_client: Any,
) -> None:
    name = unique("first")
    progress = Recorder()
    target = make_cloudml(
        name,
        progress,
        machine_type="n1-standard-4",
        min_replicas=1,
        max_replicas=3,
        service_account="runner@tfdeploy-test.iam.gserviceaccount.com",
        labels={"team": "vision"},
    )
    result = target.deploy(digits_bundle)

    assert result.changed and result.bytes_sent == digits_bundle.manifest.size_bytes
    # Byte progress of the staging upload: non-decreasing, ending at the total.
    totals = {total for _, total in progress.advances}
    assert totals == {result.bytes_sent}
    done = [d for d, _ in progress.advances]
    assert done == sorted(done) and done[-1] == result.bytes_sent
    assert progress.heartbeats, "operations are polled with a heartbeat"

    hex_digest = digits_bundle.manifest.digest.removeprefix("sha256:")
    prefix = f"tfdeploy/{name}/{hex_digest}/"
    staged = {b.name for b in storage_client.list_blobs(STAGING_BUCKET, prefix=prefix)}
    assert f"{prefix}saved_model.pb" in staged

    (model,) = vertex.models_named(name)
    assert model.id == f"tfdeploy-{name}"
    version = model.versions["1"]
    assert version.artifact_uri == f"gs://{STAGING_BUCKET}/{prefix.rstrip('/')}"
    assert version.labels == {
        "team": "vision",
        "tfdeploy-model": name,
        "tfdeploy-digest-1": hex_digest[:32],
        "tfdeploy-digest-2": hex_digest[32:],
    }
    assert version.image_uri.startswith("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-")
    endpoint = vertex.endpoint_named(name)
    assert endpoint.labels == {"team": "vision", "tfdeploy-model": name}
    (only,) = endpoint.deployed.values()
    assert (only.machine_type, only.min_replicas, only.max_replicas) == ("n1-standard-4", 1, 3)
    assert only.service_account == "runner@tfdeploy-test.iam.gserviceaccount.com"
    assert endpoint.traffic_split == {only.id: 100}

    status = result.status
    assert (status.state, status.version, status.digest) == (
        "serving",
        "1",
        digits_bundle.manifest.digest,
    )
    assert status.url == f"{vertex.url}/v1/{vertex.endpoint_name(endpoint.id)}:predict"
    (row,) = status.versions
    assert (row.state, row.traffic_percent, row.labels) == ("serving", 100, ("default",))
    assert "n1-standard-4" in (row.detail or "")

    got = target.predict({"instances": digits_instances})["predictions"]
    want = digits_model.predict({"instances": digits_instances})["predictions"]
    assert np.max(np.abs(np.asarray(got) - np.asarray(want))) <= 1e-5


def test_an_unchanged_redeploy_uploads_nothing_and_creates_nothing(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = unique("same")
    make_cloudml(name).deploy(digits_bundle)
    start = len(vertex.requests)
    target = make_cloudml(name)
    assert target.plan(digits_bundle).action == "noop"
    again = target.deploy(digits_bundle)
    assert (again.changed, again.bytes_sent) == (False, 0)
    # Only reads: no upload, no model version, no endpoint, no deployment, no traffic change.
    assert api_calls(vertex, start) == []
    assert all(r.method == "GET" for r in vertex.requests[start:])
    assert list(vertex.models_named(name)[0].versions) == ["1"]


def test_a_new_bundle_becomes_the_next_version_and_the_old_deployment_goes(
    vertex: FakeVertex,
    make_cloudml: Any,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
) -> None:
    name = unique("next")
    make_cloudml(name).deploy(digits_bundle)
    target = make_cloudml(name)
    plan = target.plan(digits_bundle_changed)
    assert plan.action == "update"
    assert any("upload it as version 2" in c for c in plan.changes)
    assert any("undeploy deployed model" in c for c in plan.changes)
    result = target.deploy(digits_bundle_changed)
    assert result.changed
    (model,) = vertex.models_named(name)
    assert list(model.versions) == ["1", "2"]
    assert model.versions["2"].aliases == ["default"]
    assert serving(vertex, name) == {(model.id, "2"): 100}
    assert deployed(vertex, name) == [(model.id, "2")]
    assert [(v.version, v.state) for v in result.status.versions] == [
        ("2", "serving"),
        ("1", "absent"),
    ]
    assert len([e for e in vertex.endpoints.values() if e.display_name == name]) == 1


def test_a_canary_keeps_the_rest_on_the_version_that_served(
    vertex: FakeVertex,
    make_cloudml: Any,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
    digits_savedmodel: Any,
    tmp_path: Any,
) -> None:
    from tfdeploy.model.bundle import package

    name = unique("canary")
    make_cloudml(name).deploy(digits_bundle)
    canary = make_cloudml(name, traffic_percent=20)
    canary.deploy(digits_bundle_changed)
    model_id = f"tfdeploy-{name}"
    assert serving(vertex, name) == {(model_id, "1"): 80, (model_id, "2"): 20}
    status = canary.status()
    assert (status.version, status.state) == ("1", "serving")  # most traffic answers by default
    assert {v.version: v.traffic_percent for v in status.versions} == {"1": 80, "2": 20}
    # The registry's default stays on the version that serves most.
    assert vertex.models[model_id].versions["2"].aliases == []
    # The same canary again changes nothing.
    assert canary.plan(digits_bundle_changed).action == "noop"
    assert not canary.deploy(digits_bundle_changed).changed
    # A third version as canary replaces the second; the first keeps its 80%.
    import shutil

    third_dir = tmp_path / "third"
    shutil.copytree(digits_savedmodel, third_dir)
    (third_dir / "NOTES.txt").write_text("third\n")
    third = package(third_dir, name="digits", output_dir=tmp_path)
    canary.deploy(third)
    assert serving(vertex, name) == {(model_id, "1"): 80, (model_id, "3"): 20}
    assert deployed(vertex, name) == [(model_id, "1"), (model_id, "3")]
    # Promoting it: the same bundle with all the traffic.
    promoted = make_cloudml(name, traffic_percent=100).deploy(third)
    assert promoted.changed and promoted.bytes_sent == 0
    assert serving(vertex, name) == {(model_id, "3"): 100}
    assert deployed(vertex, name) == [(model_id, "3")]


def test_accelerators_reach_the_deployment(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = unique("gpu")
    make_cloudml(
        name, machine_type="n1-standard-8", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=2
    ).deploy(digits_bundle)
    (only,) = vertex.endpoint_named(name).deployed.values()
    assert (only.accelerator_type, only.accelerator_count) == ("NVIDIA_TESLA_T4", 2)
    image = vertex.models[f"tfdeploy-{name}"].versions["1"].image_uri
    assert "/tf2-gpu." in image


def test_an_unknown_accelerator_is_a_config_error_naming_the_known_ones(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = unique("badgpu")
    target = make_cloudml(name, accelerator_type="NVIDIA_TESLA_Z9", accelerator_count=1)
    start = len(vertex.requests)
    with pytest.raises(ConfigError, match="NVIDIA_TESLA_Z9") as raised:
        target.deploy(digits_bundle)
    assert "NVIDIA_TESLA_T4" in (raised.value.hint or "")
    assert vertex.requests[start:] == []


def test_an_explicit_image_wins(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = unique("image")
    image = "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-12:latest"
    make_cloudml(name, serving_container_image=image).deploy(digits_bundle)
    assert vertex.models[f"tfdeploy-{name}"].versions["1"].image_uri == image


def test_an_endpoint_given_by_numeric_id_is_created_with_that_id_and_reused(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = unique("byid")
    endpoint_id = str(700000 + next(_names))
    make_cloudml(name, endpoint=endpoint_id).deploy(digits_bundle)
    assert vertex.endpoints[endpoint_id].display_name == name
    make_cloudml(name, endpoint=endpoint_id).deploy(digits_bundle_changed)
    assert len([e for e in vertex.endpoints.values() if e.display_name == name]) == 1
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "2"): 100}


def test_an_existing_endpoint_is_found_by_display_name(
    vertex: FakeVertex, aiplatform: Any, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = unique("existing")
    made = aiplatform.Endpoint.create(display_name=f"{name}-endpoint")
    make_cloudml(name, endpoint=f"{name}-endpoint").deploy(digits_bundle)
    assert [e.id for e in vertex.endpoints.values() if e.display_name == f"{name}-endpoint"] == [
        made.name
    ]
    assert serving(vertex, f"{name}-endpoint") == {(f"tfdeploy-{name}", "1"): 100}


def test_two_endpoints_with_the_display_name_are_refused(
    vertex: FakeVertex, aiplatform: Any, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = unique("twins")
    for _ in range(2):
        aiplatform.Endpoint.create(display_name=name)
    with pytest.raises(TargetError, match="2 endpoints .* are named") as raised:
        make_cloudml(name).deploy(digits_bundle)
    assert "numeric id" in (raised.value.hint or "")
    assert vertex.models_named(name) == []


def test_an_endpoint_serving_another_model_is_left_alone(
    vertex: FakeVertex, aiplatform: Any, make_cloudml: Any, digits_bundle: Bundle, digits_uri: str
) -> None:
    name = unique("shared")
    other = aiplatform.Model.upload(
        display_name=f"{name}-other",
        artifact_uri=digits_uri,
        serving_container_image_uri="us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
    )
    endpoint = aiplatform.Endpoint.create(display_name=name)
    endpoint.deploy(other, machine_type="n1-standard-2", traffic_percentage=100)
    before = serving(vertex, name)
    with pytest.raises(TargetError, match="also serves models") as raised:
        make_cloudml(name).deploy(digits_bundle)
    assert "its own endpoint" in (raised.value.hint or "")
    assert serving(vertex, name) == before
    assert vertex.models_named(name) == []
