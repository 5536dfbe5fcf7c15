"""Faults at every step of a deploy: the endpoint keeps serving what it served, with its old
split, and running the deploy again finishes the job without a second model, version, endpoint
or deployment. The fake injects them into what the real client libraries send."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from tfdeploy_cloudml.target import TRAFFIC_ATTEMPTS

import tfdeploy
from tfdeploy.plugin import Bundle, TfdeployError

from .conftest import STAGING_BUCKET, Recorder, deployed, fake_settings, serving
from .fake_vertex import FakeVertex

_names = itertools.count(1)

#: Steps of a deploy that the fake can fail, and the kinds of fault each can get (a traffic
#: change is one request, not a long-running operation).
KINDS = ["500", "429", "failed-operation", "drop", "drop-after"]
FAULTS = [
    (step, kind)
    for step in ["model-upload", "endpoint-create", "deploy", "traffic"]
    for kind in KINDS
    if not (step == "traffic" and kind == "failed-operation")
]


def everything(fake: FakeVertex, name: str) -> dict[str, Any]:
    """How many models, versions and endpoints a model name has, and what its endpoint serves."""
    models = fake.models_named(name)
    return {
        "models": len(models),
        "versions": sorted(v for m in models for v in m.versions),
        "endpoints": len([e for e in fake.endpoints.values() if e.display_name == name]),
        "serving": serving(fake, name),
        "deployed": deployed(fake, name),
    }


@pytest.mark.parametrize(("step", "kind"), FAULTS)
def test_a_fault_leaves_what_served_and_a_rerun_finishes_without_duplicates(
    vertex: FakeVertex,
    make_cloudml: Any,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
    step: str,
    kind: str,
) -> None:
    name = f"fault{next(_names)}"
    model_id = f"tfdeploy-{name}"
    if step == "endpoint-create":
        first, second = None, digits_bundle  # the endpoint is made by the first deploy
    else:
        first, second = digits_bundle, digits_bundle_changed
        make_cloudml(name).deploy(first)
    before = everything(vertex, name)
    vertex.fail(step, kind, times=TRAFFIC_ATTEMPTS if step == "traffic" else 1)

    with pytest.raises(TfdeployError) as raised:
        make_cloudml(name).deploy(second)

    error = raised.value
    assert error.retryable == (kind != "failed-operation"), error.describe()
    after = everything(vertex, name)
    if kind == "drop-after" and step == "traffic":
        # The switch happened and only its answer was lost: the new version serves, whole.
        assert after["serving"] == {(model_id, "2"): 100}
    else:
        assert after["serving"] == before["serving"]
    if kind != "drop-after":
        assert after["deployed"] == before["deployed"]
        assert after["endpoints"] == before["endpoints"]
    assert after["models"] == 1 or (step == "endpoint-create" and after["models"] <= 1)

    rerun = make_cloudml(name).deploy(second)
    final = everything(vertex, name)
    want = "1" if first is None else "2"
    assert final["serving"] == {(model_id, want): 100}
    assert final["deployed"] == [(model_id, want)]
    assert final["models"] == 1 and final["endpoints"] == 1
    assert final["versions"] == (["1"] if first is None else ["1", "2"])
    assert rerun.status.state == "serving"


def test_a_deployment_that_never_comes_up_is_reported_and_changes_nothing(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"fault{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    before = everything(vertex, name)
    vertex.fail("deploy", "failed-operation")
    with pytest.raises(TfdeployError, match="never became ready") as raised:
        make_cloudml(name).deploy(digits_bundle_changed)
    assert raised.value.code == "FAILED_PRECONDITION" and not raised.value.retryable
    after = everything(vertex, name)
    assert after == {**before, "versions": ["1", "2"]}  # the version is uploaded, not deployed


def test_one_failed_traffic_change_is_sent_again_at_once(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"fault{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    vertex.fail("traffic", "429")
    progress = Recorder()
    make_cloudml(name, progress).deploy(digits_bundle_changed)
    assert [r.status for r in vertex.calls("traffic")[-2:]] == [429, 200]
    assert any("sending it again" in s for s in progress.steps)
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "2"): 100}


def test_when_the_traffic_change_fails_the_new_deployment_is_withdrawn(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"fault{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    vertex.fail("traffic", "500", times=TRAFFIC_ATTEMPTS)
    progress = Recorder()
    with pytest.raises(TfdeployError, match="changing the traffic split"):
        make_cloudml(name, progress).deploy(digits_bundle_changed)
    assert any("withdrawing deployed model" in s for s in progress.steps)
    model_id = f"tfdeploy-{name}"
    assert deployed(vertex, name) == [(model_id, "1")]
    assert vertex.endpoint_named(name).traffic_split == {
        next(iter(vertex.endpoint_named(name).deployed)): 100
    }


def test_a_failed_undeploy_after_the_switch_says_the_new_version_serves(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"fault{next(_names)}"
    model_id = f"tfdeploy-{name}"
    make_cloudml(name).deploy(digits_bundle)
    vertex.fail("undeploy", "failed-operation")
    with pytest.raises(TfdeployError, match="version 2 serves, but undeploying") as raised:
        make_cloudml(name).deploy(digits_bundle_changed)
    assert "deploy again" in (raised.value.hint or "")
    assert serving(vertex, name) == {(model_id, "2"): 100}
    status = make_cloudml(name).status()
    assert status.state == "pending" and "deployed without traffic" in (status.detail or "")
    make_cloudml(name).deploy(digits_bundle_changed)
    assert deployed(vertex, name) == [(model_id, "2")]
    assert make_cloudml(name).status().state == "serving"


@pytest.mark.parametrize("kind", ["500", "429", "drop"])
def test_a_failed_poll_is_polled_again(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, kind: str
) -> None:
    name = f"fault{next(_names)}"
    vertex.polls_to_finish = 2
    vertex.fail("operation", kind)
    make_cloudml(name).deploy(digits_bundle)
    statuses = [r.status for r in vertex.calls("operation")]
    assert (None if kind == "drop" else int(kind)) in statuses
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "1"): 100}


def test_an_operation_that_outlives_the_timeout_is_named_and_nothing_changes(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"fault{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    before = serving(vertex, name)
    vertex.polls_to_finish = 10_000
    slow = make_cloudml(name, operation_timeout=0.3, poll_interval=0.05)
    with pytest.raises(TfdeployError, match="not finished after 0.3 s") as raised:
        slow.deploy(digits_bundle_changed)
    assert "operations/" in (raised.value.hint or "") and not raised.value.retryable
    assert serving(vertex, name) == before
    vertex.finish_operations()  # Vertex AI finishes it on its own; a rerun completes the deploy
    vertex.polls_to_finish = 1
    make_cloudml(name).deploy(digits_bundle_changed)
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "2"): 100}
    assert vertex.models[f"tfdeploy-{name}"].versions.keys() == {"1", "2"}


# --- staging uploads (Cloud Storage) --------------------------------------------------------


def test_a_failed_staging_upload_is_retried_by_the_storage_client(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle
) -> None:
    name = f"fault{next(_names)}"
    vertex.fail("upload", "500")
    make_cloudml(name).deploy(digits_bundle)
    assert 500 in [r.status for r in vertex.calls("upload")]
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "1"): 100}


def test_a_refused_staging_upload_changes_nothing_and_a_rerun_uploads_the_rest(
    vertex: FakeVertex,
    make_cloudml: Any,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
    storage_client: Any,
) -> None:
    name = f"fault{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    before = everything(vertex, name)
    files = [p for p in Path(digits_bundle_changed.model_dir).rglob("*") if p.is_file()]
    # The first file goes up, the second is refused (403 is not retried).
    vertex.fail("upload", "500", status="PERMISSION_DENIED", message="no storage.objects.create")
    start = len(vertex.requests)
    progress = Recorder()
    with pytest.raises(TfdeployError, match="no storage.objects.create") as raised:
        make_cloudml(name, progress).deploy(digits_bundle_changed)
    assert raised.value.code == "PERMISSION_DENIED" and not raised.value.retryable
    assert "Storage Object Admin" in (raised.value.hint or "")
    assert everything(vertex, name) == before
    assert [r.step for r in vertex.requests[start:] if r.step not in (None, "upload")] == []
    start = len(vertex.requests)
    rerun = make_cloudml(name).deploy(digits_bundle_changed)
    uploads = [r for r in vertex.requests[start:] if r.step == "upload"]
    assert len(uploads) == len(files)  # the refused file and those after it, once each
    assert rerun.bytes_sent == digits_bundle_changed.manifest.size_bytes
    hex_digest = digits_bundle_changed.manifest.digest.removeprefix("sha256:")
    staged = list(
        storage_client.list_blobs(STAGING_BUCKET, prefix=f"tfdeploy/{name}/{hex_digest}/")
    )
    assert len(staged) == len(files)


class _StopAfterFirstFile(Recorder):
    """Ctrl-C once the first file is staged: the target reports the bytes read for the upload,
    then the same figure again once the file is up."""

    def advance(self, done: int, total: int) -> None:
        repeated = bool(self.advances) and self.advances[-1] == (done, total)
        super().advance(done, total)
        if repeated and 0 < done < total:
            raise KeyboardInterrupt


def test_an_interrupted_staging_resumes_where_it_stopped(
    vertex: FakeVertex, make_cloudml: Any, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    name = f"fault{next(_names)}"
    make_cloudml(name).deploy(digits_bundle)
    before = everything(vertex, name)
    with pytest.raises(KeyboardInterrupt):
        make_cloudml(name, _StopAfterFirstFile()).deploy(digits_bundle_changed)
    assert everything(vertex, name) == before
    rerun = make_cloudml(name).deploy(digits_bundle_changed)
    assert 0 < rerun.bytes_sent < digits_bundle_changed.manifest.size_bytes
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "2"): 100}


# --- through tfdeploy.deploy, which retries what is worth retrying --------------------------


def test_tfdeploy_deploy_retries_retryable_faults_to_the_end(
    vertex: FakeVertex, tfdeploy_project: Any, staging_bucket: Any
) -> None:
    name = f"retry{next(_names)}"
    tfdeploy_project.model_name = name
    tfdeploy_project.add_target("prod", "cloudml", **fake_settings(vertex))
    for step, kind in [
        ("model-upload", "drop-after"),
        ("deploy", "429"),
        ("endpoint-create", "500"),
    ]:
        vertex.fail(step, kind)
    seen: dict[str, Recorder] = {}
    report = tfdeploy.deploy(
        config=tfdeploy_project.config,
        target="prod",
        progress=lambda target: seen.setdefault(target, Recorder()),
    )
    (outcome,) = report.outcomes
    assert outcome.ok and outcome.result is not None
    assert outcome.result.status.state == "serving"
    assert len(seen["prod"].retries) == 3
    assert everything(vertex, name)["versions"] == ["1"]
    assert everything(vertex, name)["endpoints"] == 1
    assert serving(vertex, name) == {(f"tfdeploy-{name}", "1"): 100}
