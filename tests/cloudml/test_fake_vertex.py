"""The fake Vertex AI API speaks what google-cloud-aiplatform speaks.

Every test drives the fake only through the real ``google-cloud-aiplatform`` and
``google-cloud-storage`` clients over a socket, then checks what a user of those clients sees
and what the fake holds.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from google.api_core import exceptions

from .conftest import STAGING_BUCKET, TF_IMAGE
from .fake_vertex import PREDICT_BODY_LIMIT, FakeVertex

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A display name no other test uses."""
    return f"{prefix}-{next(_names)}"


def upload(aiplatform: Any, uri: str, name: str, **kwargs: Any) -> Any:
    return aiplatform.Model.upload(
        display_name=name, artifact_uri=uri, serving_container_image_uri=TF_IMAGE, **kwargs
    )


@pytest.fixture
def served(vertex: FakeVertex, aiplatform: Any, digits_uri: str) -> tuple[Any, Any]:
    """A new model (version 1) and a new endpoint serving it with all the traffic."""
    model = upload(aiplatform, digits_uri, unique("digits"))
    endpoint = aiplatform.Endpoint.create(display_name=unique("serving"))
    endpoint.deploy(model, machine_type="n1-standard-2", traffic_percentage=100)
    return model, endpoint


@pytest.fixture(scope="module")
def shared(fake_vertex: FakeVertex, aiplatform: Any, digits_uri: str) -> tuple[Any, Any]:
    """Like :func:`served`, shared by the tests that change nothing."""
    model = upload(aiplatform, digits_uri, unique("shared"))
    endpoint = aiplatform.Endpoint.create(display_name=unique("shared"))
    endpoint.deploy(model, machine_type="n1-standard-2", traffic_percentage=100)
    return model, endpoint


def status_of(error: Any) -> str:
    """The google.rpc status name of an error answered over REST (only in the JSON body)."""
    status: str = error.response.json()["error"]["status"]
    return status


def snapshot(vertex: FakeVertex, endpoint: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """What the fake holds for an endpoint: its split and its deployed (model, version)s."""
    state = vertex.endpoints[endpoint.name]
    deployed = sorted((d.model_id, d.version_id) for d in state.deployed.values())
    return dict(state.traffic_split), deployed


def test_upload_deploy_and_predict_answer_like_the_local_model(
    vertex: FakeVertex, aiplatform: Any, digits_uri: str, digits_model: Any, digits_instances: Any
) -> None:
    vertex.polls_to_finish = 2
    start = len(vertex.requests)
    model = upload(aiplatform, digits_uri, unique("digits"), labels={"tfdeploy-model": "digits"})
    assert model.version_id == "1"
    assert list(model.version_aliases) == ["default"]
    assert model.resource_name == f"{vertex.parent}/models/{model.name}"
    assert model.labels == {"tfdeploy-model": "digits"}
    endpoint = aiplatform.Endpoint.create(display_name=unique("digits-endpoint"))
    endpoint.deploy(
        model,
        machine_type="n1-standard-4",
        min_replica_count=1,
        max_replica_count=3,
        traffic_percentage=100,
        service_account="runner@tfdeploy-test.iam.gserviceaccount.com",
    )
    (deployed,) = endpoint.list_models()
    assert endpoint.traffic_split == {deployed.id: 100}
    assert (deployed.model, deployed.model_version_id) == (model.resource_name, "1")
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-standard-4"
    assert (resources.min_replica_count, resources.max_replica_count) == (1, 3)

    prediction = endpoint.predict(instances=digits_instances)
    local = digits_model.predict({"instances": digits_instances})["predictions"]
    assert np.max(np.abs(np.array(prediction.predictions) - np.array(local))) <= 1e-5
    assert prediction.deployed_model_id == deployed.id
    assert prediction.model_resource_name == model.resource_name
    assert prediction.model_version_id == "1"

    state = vertex.endpoints[endpoint.name].deployed[deployed.id]
    assert state.service_account == "runner@tfdeploy-test.iam.gserviceaccount.com"
    # Replica counts change through the GAPIC client; the SDK's classes have no call for it.
    endpoint.api_client.mutate_deployed_model(
        endpoint=endpoint.resource_name,
        deployed_model={
            "id": deployed.id,
            "dedicated_resources": {"min_replica_count": 2, "max_replica_count": 4},
        },
        update_mask={"paths": ["dedicated_resources"]},
    ).result()
    (mutated,) = endpoint.list_models()
    resources = mutated.dedicated_resources
    assert (resources.min_replica_count, resources.max_replica_count) == (2, 4)
    # The SDK polls operations at /ui/... and names versions URL-encoded, as Vertex sees them.
    paths = [r.path for r in vertex.requests[start:]]
    polled = Counter(p for p in paths if p.startswith("/ui/") and "/operations/" in p)
    assert list(polled.values()) == [2, 2, 2, 2]  # upload, create, deploy, mutate
    assert any(p.endswith(f"/models/{model.name}%401") for p in paths)


def test_operations_finish_after_the_configured_number_of_polls(
    vertex: FakeVertex, aiplatform: Any
) -> None:
    vertex.polls_to_finish = 3
    start = len(vertex.requests)
    endpoint = aiplatform.Endpoint.create(display_name=unique("polled"))
    polls = [r for r in vertex.requests[start:] if r.step == "operation"]
    assert len(polls) == 3
    assert endpoint.name in vertex.endpoints


def test_a_second_version_takes_a_canary_share_then_all_traffic(
    vertex: FakeVertex, aiplatform: Any, served: tuple[Any, Any], digits_changed_uri: str
) -> None:
    vertex.polls_to_finish = 2
    model, endpoint = served
    (first,) = endpoint.list_models()
    v2 = upload(
        aiplatform,
        digits_changed_uri,
        model.display_name,
        parent_model=model.resource_name,
        labels={"tfdeploy-digest-1": "a" * 32},
        is_default_version=False,
        version_aliases=["canary"],
    )
    assert (v2.resource_name, v2.version_id) == (model.resource_name, "2")
    assert list(v2.version_aliases) == ["canary"]
    versions = aiplatform.models.ModelRegistry(model.resource_name).list_versions()
    assert {v.version_id: list(v.version_aliases) for v in versions} == {
        "1": ["default"],
        "2": ["canary"],
    }
    assert len(vertex.models_named(model.display_name)) == 1

    endpoint.deploy(v2, machine_type="n1-standard-2", traffic_percentage=20)
    second = next(d for d in endpoint.list_models() if d.model_version_id == "2")
    assert endpoint.traffic_split == {first.id: 80, second.id: 20}
    assert snapshot(vertex, endpoint)[0] == {first.id: 80, second.id: 20}
    answered = {endpoint.predict(instances=[[0.0] * 64]).model_version_id for _ in range(60)}
    assert answered == {"1", "2"}

    endpoint.update(traffic_split={first.id: 0, second.id: 100})
    assert endpoint.traffic_split == {first.id: 0, second.id: 100}
    endpoint.undeploy(first.id)
    assert endpoint.traffic_split == {second.id: 100}
    assert snapshot(vertex, endpoint) == ({second.id: 100}, [(model.name, "2")])
    assert endpoint.predict(instances=[[0.0] * 64]).model_version_id == "2"


def test_a_new_default_version_moves_the_default_alias(
    vertex: FakeVertex, aiplatform: Any, digits_uri: str, digits_changed_uri: str
) -> None:
    v1 = upload(aiplatform, digits_uri, unique("aliases"))
    v2 = upload(aiplatform, digits_changed_uri, v1.display_name, parent_model=v1.name)
    assert list(v2.version_aliases) == ["default"]
    assert aiplatform.Model(v1.name).version_id == "2"
    assert list(aiplatform.Model(v1.name, version="1").version_aliases) == []
    # A rollback in the registry: the default alias moves back to version 1.
    aiplatform.models.ModelRegistry(v1.name).add_version_aliases(["default"], version="1")
    assert aiplatform.Model(v1.name).version_id == "1"
    assert aiplatform.Model(v1.name, version="default").version_id == "1"


def test_undeploying_a_model_with_traffic_needs_a_split_that_gives_its_share_away(
    vertex: FakeVertex, aiplatform: Any, served: tuple[Any, Any], digits_changed_uri: str
) -> None:
    model, endpoint = served
    v2 = upload(aiplatform, digits_changed_uri, model.display_name, parent_model=model.name)
    endpoint.deploy(v2, machine_type="n1-standard-2", traffic_percentage=50)
    before = snapshot(vertex, endpoint)
    first = next(d.id for d in endpoint.list_models() if d.model_version_id == "1")
    with pytest.raises(exceptions.BadRequest, match="50% of the traffic") as raised:
        endpoint.api_client.undeploy_model(
            endpoint=endpoint.resource_name, deployed_model_id=first
        ).result()
    assert status_of(raised.value) == "FAILED_PRECONDITION"
    with pytest.raises(exceptions.BadRequest, match="add up to 100") as raised:
        endpoint.api_client.undeploy_model(
            endpoint=endpoint.resource_name,
            deployed_model_id=first,
            traffic_split={d: 60 for d in before[0] if d != first},
        ).result()
    assert status_of(raised.value) == "INVALID_ARGUMENT"
    assert snapshot(vertex, endpoint) == before


def test_traffic_splits_must_add_up_to_100_and_name_deployed_models(
    vertex: FakeVertex, aiplatform: Any, shared: tuple[Any, Any]
) -> None:
    model, endpoint = shared
    before = snapshot(vertex, endpoint)
    (deployed,) = endpoint.list_models()
    with pytest.raises(exceptions.BadRequest, match="add up to 100") as raised:
        endpoint.api_client.deploy_model(
            endpoint=endpoint.resource_name,
            deployed_model={
                "model": model.versioned_resource_name,
                "dedicated_resources": {
                    "machine_spec": {"machine_type": "n1-standard-2"},
                    "min_replica_count": 1,
                },
            },
            traffic_split={"0": 30, deployed.id: 30},
        )
    assert status_of(raised.value) == "INVALID_ARGUMENT"
    with pytest.raises(exceptions.BadRequest, match="not deployed") as raised:
        endpoint.update(traffic_split={"424242": 100})
    assert status_of(raised.value) == "INVALID_ARGUMENT"
    assert snapshot(vertex, endpoint) == before


def test_endpoints_and_models_are_found_by_display_name_labels_and_id(
    vertex: FakeVertex, aiplatform: Any, digits_uri: str
) -> None:
    name = unique("lookup")
    endpoint = aiplatform.Endpoint.create(display_name=name, labels={"owner": "tfdeploy"})
    aiplatform.Endpoint.create(display_name=unique("other"))
    found = aiplatform.Endpoint.list(filter=f'display_name="{name}"')
    assert [e.resource_name for e in found] == [endpoint.resource_name]
    assert aiplatform.Endpoint(endpoint.name).display_name == name
    assert aiplatform.Endpoint(endpoint.resource_name).labels == {"owner": "tfdeploy"}
    assert aiplatform.Endpoint.list(filter='display_name="nobody-has-this-name"') == []

    model = upload(aiplatform, digits_uri, unique("lookup-model"), labels={"tfdeploy-model": name})
    listed = aiplatform.Model.list(filter=f'labels.tfdeploy-model="{name}"')
    assert [m.resource_name for m in listed] == [model.resource_name]
    by_name = aiplatform.Model.list(filter=f'display_name="{model.display_name}"')
    assert [m.version_id for m in by_name] == ["1"]
    registry = aiplatform.models.ModelRegistry(model.resource_name)
    assert [v.version_id for v in registry.list_versions(filter=f'labels.tfdeploy-model="{name}"')]
    with pytest.raises(exceptions.BadRequest, match="Unsupported filter") as raised:
        aiplatform.Endpoint.list(filter="create_time > 2020")
    assert status_of(raised.value) == "INVALID_ARGUMENT"


def test_a_sha256_digest_does_not_fit_in_one_label(
    vertex: FakeVertex, aiplatform: Any, digits_uri: str
) -> None:
    digest = "0123456789abcdef" * 4
    name = unique("labels")
    with pytest.raises(exceptions.BadRequest, match="no longer than 63") as raised:
        upload(aiplatform, digits_uri, name, labels={"tfdeploy-digest": digest})
    assert status_of(raised.value) == "INVALID_ARGUMENT"
    assert vertex.models_named(name) == []
    halves = {"tfdeploy-digest-1": digest[:32], "tfdeploy-digest-2": digest[32:]}
    assert upload(aiplatform, digits_uri, name, labels=halves).labels == halves


def test_an_artifact_directory_without_a_savedmodel_is_refused(
    vertex: FakeVertex, aiplatform: Any, staging_bucket: Any
) -> None:
    staging_bucket.blob("not-a-model/README.txt").upload_from_string("hello")
    name = unique("empty")
    with pytest.raises(exceptions.BadRequest, match="saved_model.pb") as raised:
        upload(aiplatform, f"gs://{STAGING_BUCKET}/not-a-model", name)
    assert status_of(raised.value) == "FAILED_PRECONDITION"
    assert vertex.models_named(name) == []


def test_a_local_directory_is_staged_by_the_sdk_under_the_staging_bucket(
    vertex: FakeVertex, aiplatform: Any, digits_savedmodel: Path, staging_bucket: Any
) -> None:
    start = len(vertex.requests)
    model = upload(aiplatform, str(digits_savedmodel), unique("staged"))
    assert model.uri.startswith(f"gs://{STAGING_BUCKET}/vertex_ai_auto_staging/")
    uploads = [r for r in vertex.requests[start:] if r.step == "upload"]
    files = [p for p in digits_savedmodel.rglob("*") if p.is_file()]
    assert len(uploads) == len(files)


def test_delete_refuses_while_deployed_then_removes_everything(
    vertex: FakeVertex, aiplatform: Any, served: tuple[Any, Any], digits_changed_uri: str
) -> None:
    model, endpoint = served
    v2 = upload(
        aiplatform,
        digits_changed_uri,
        model.display_name,
        parent_model=model.name,
        is_default_version=False,
    )
    with pytest.raises(exceptions.BadRequest, match="deployed models") as raised:
        endpoint.delete()
    assert status_of(raised.value) == "FAILED_PRECONDITION"
    with pytest.raises(exceptions.BadRequest, match="undeploy it first") as raised:
        model.delete()
    assert status_of(raised.value) == "FAILED_PRECONDITION"
    aiplatform.models.ModelRegistry(model.name).delete_version(v2.version_id)
    assert list(vertex.models[model.name].versions) == ["1"]
    endpoint.delete(force=True)
    model.delete()
    assert endpoint.name not in vertex.endpoints
    assert model.name not in vertex.models


def test_an_unknown_endpoint_is_a_404_in_googles_error_shape(
    vertex: FakeVertex, aiplatform: Any
) -> None:
    unknown = aiplatform.Endpoint("987654")  # the SDK looks the endpoint up only when used
    with pytest.raises(exceptions.NotFound, match="endpoints/987654"):
        unknown.predict(instances=[[0.0] * 64])
    url = f"{vertex.url}/v1/{vertex.parent}/endpoints/987654:predict"
    request = urllib.request.Request(url, data=b'{"instances": [[1.0]]}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request)
    assert raised.value.code == 404
    error = json.loads(raised.value.read())["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert "987654" in error["message"]


def test_a_predict_body_over_1_5_mb_as_sent_is_refused(
    vertex: FakeVertex, shared: tuple[Any, Any]
) -> None:
    _, endpoint = shared
    instances = [[0.123456789] * 64 for _ in range(1400)]
    compact = len(json.dumps({"instances": instances}))
    assert compact < PREDICT_BODY_LIMIT  # small enough compact, too large as the SDK sends it
    start = len(vertex.requests)
    with pytest.raises(exceptions.BadRequest, match="exceeds the limit: 1572864 bytes") as raised:
        endpoint.predict(instances=instances)
    assert status_of(raised.value) == "INVALID_ARGUMENT"
    (sent,) = [r for r in vertex.requests[start:] if r.step == "predict"]
    assert sent.body_size > PREDICT_BODY_LIMIT and sent.status == 400
    assert len(endpoint.predict(instances=instances[:400]).predictions) == 400


def test_input_the_model_refuses_is_a_400_carrying_the_model_servers_error(
    vertex: FakeVertex, shared: tuple[Any, Any]
) -> None:
    _, endpoint = shared
    with pytest.raises(exceptions.BadRequest, match="error") as raised:
        endpoint.predict(instances=[["not", "numbers"]])
    assert status_of(raised.value) == "INVALID_ARGUMENT"


# --- faults ---------------------------------------------------------------------------------


def everything(vertex: FakeVertex, model: Any, endpoint: Any) -> tuple[Any, ...]:
    """The endpoint's split and deployments, how many endpoints, how many model versions."""
    return (
        snapshot(vertex, endpoint),
        len(vertex.endpoints),
        len(vertex.models[model.name].versions),
    )


def _calls(aiplatform: Any, model: Any, endpoint: Any, uri: str) -> dict[str, Any]:
    """One SDK call per fault step, each against a model and endpoint that already serve."""
    deployed = endpoint.list_models()[0].id
    return {
        "model-upload": lambda: upload(
            aiplatform, uri, model.display_name, parent_model=model.name
        ),
        "endpoint-create": lambda: aiplatform.Endpoint.create(display_name=unique("faulty")),
        "deploy": lambda: endpoint.deploy(
            model, machine_type="n1-standard-2", traffic_percentage=50
        ),
        "undeploy": lambda: endpoint.undeploy(deployed),
        "traffic": lambda: endpoint.update(traffic_split={deployed: 100}),
        "predict": lambda: endpoint.predict(instances=[[0.0] * 64]),
    }


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("500", exceptions.InternalServerError),
        ("429", exceptions.TooManyRequests),
        ("503", exceptions.ServiceUnavailable),
        ("drop", requests.exceptions.ConnectionError),
    ],
)
@pytest.mark.parametrize(
    "step", ["model-upload", "endpoint-create", "deploy", "undeploy", "traffic", "predict"]
)
def test_an_injected_fault_reaches_the_client_and_changes_nothing(
    vertex: FakeVertex,
    aiplatform: Any,
    shared: tuple[Any, Any],
    digits_uri: str,
    step: str,
    kind: str,
    error: type[Exception],
) -> None:
    model, endpoint = shared
    call = _calls(aiplatform, model, endpoint, digits_uri)[step]
    before = everything(vertex, model, endpoint)
    vertex.fail(step, kind)
    with pytest.raises(error):
        call()
    after = everything(vertex, model, endpoint)
    assert after == before
    assert vertex.calls(step)[-1].status == (None if kind == "drop" else int(kind))


@pytest.mark.parametrize(
    ("step", "error", "message"),
    [
        ("model-upload", exceptions.InternalServerError, "Model upload failed"),
        ("endpoint-create", exceptions.InternalServerError, "Endpoint creation failed"),
        ("deploy", exceptions.FailedPrecondition, "Model server never became ready"),
        ("undeploy", exceptions.InternalServerError, "Undeploying the model failed"),
    ],
)
def test_a_failed_operation_raises_from_the_sdk_and_changes_nothing(
    vertex: FakeVertex,
    aiplatform: Any,
    shared: tuple[Any, Any],
    digits_uri: str,
    step: str,
    error: type[Exception],
    message: str,
) -> None:
    model, endpoint = shared
    call = _calls(aiplatform, model, endpoint, digits_uri)[step]
    before = everything(vertex, model, endpoint)
    vertex.fail(step, "failed-operation")
    with pytest.raises(error, match=message):
        call()
    after = everything(vertex, model, endpoint)
    assert after == before


def test_a_failed_operation_can_carry_any_status(
    vertex: FakeVertex, shared: tuple[Any, Any]
) -> None:
    model, endpoint = shared
    vertex.fail("deploy", "failed-operation", status="RESOURCE_EXHAUSTED", message="No quota.")
    with pytest.raises(exceptions.ResourceExhausted, match="No quota"):
        endpoint.deploy(model, machine_type="n1-standard-2", traffic_percentage=50)


def test_a_dropped_answer_after_the_change_leaves_the_change_made(
    vertex: FakeVertex, aiplatform: Any, served: tuple[Any, Any]
) -> None:
    model, endpoint = served
    vertex.fail("deploy", "drop-after")
    with pytest.raises(requests.exceptions.ConnectionError):
        endpoint.deploy(model, machine_type="n1-standard-2", traffic_percentage=50)
    split, deployed = snapshot(vertex, endpoint)
    assert deployed == [(model.name, "1"), (model.name, "1")]
    assert sorted(split.values()) == [50, 50]
    assert sorted(aiplatform.Endpoint(endpoint.name).traffic_split.values()) == [50, 50]


def test_polls_are_retried_by_the_sdk_on_503_only(
    vertex: FakeVertex, aiplatform: Any, digits_uri: str
) -> None:
    name = unique("polls")
    vertex.fail("operation", "503")
    model = upload(aiplatform, digits_uri, name)
    assert [r.status for r in vertex.calls("operation")[-2:]] == [503, 200]
    vertex.fail("operation", "500")
    with pytest.raises(exceptions.InternalServerError):
        upload(aiplatform, digits_uri, name, parent_model=model.name)
    # The SDK gave up on the operation, which still finishes once someone polls it.
    vertex.finish_operations()
    assert list(vertex.models[model.name].versions) == ["1", "2"]


def test_the_next_operation_to_finish_can_fail_whatever_started_it(
    vertex: FakeVertex, aiplatform: Any
) -> None:
    vertex.fail("operation", "failed-operation")
    with pytest.raises(exceptions.InternalServerError, match="The operation failed"):
        aiplatform.Endpoint.create(display_name=unique("unlucky"))


@pytest.mark.parametrize("kind", ["500", "drop"])
def test_upload_faults_reach_the_storage_client_which_retries_them(
    vertex: FakeVertex, staging_bucket: Any, kind: str
) -> None:
    blob = staging_bucket.blob(f"faults/{unique(kind)}.txt")
    vertex.fail("upload", kind)
    with pytest.raises((exceptions.InternalServerError, requests.exceptions.ConnectionError)):
        blob.upload_from_string(b"payload", retry=None)
    assert not blob.exists()
    vertex.fail("upload", kind)
    blob.upload_from_string(b"payload")  # the default retry covers 5xx and dropped connections
    assert blob.download_as_bytes() == b"payload"
    assert [r.status for r in vertex.calls("upload")[-2:]] == [
        None if kind == "drop" else 500,
        200,
    ]
