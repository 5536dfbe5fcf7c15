"""The connect target's guarantees, against the fake Connect server through rsconnect-python.

Mostly in mode tensorflow, whose content the fake serves in-process (no app to start); what
only mode app shows is in test_app.py. Faults are injected into the fake: a failed task, 500s,
requests and tasks that never answer, a refused key, a server that is not there.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from typing import Any

import numpy as np
import pytest
from rsconnect.api import RSConnectClient, RSConnectServer
from tests.connect.conftest import Recorder, Targets
from tests.connect.fake_connect import FakeConnect
from tests.connect.test_fake_connect import static_bundle
from tfdeploy_connect.record import PREFIX

from tfdeploy.plugin import Bundle, RemoteError, TargetError, TfdeployError


def instances_answer(target: Any, digits_instances: list[Any], digits_model: Any) -> None:
    """The target predicts what the local model predicts."""
    body = {"instances": digits_instances}
    got = np.asarray(target.predict(body)["predictions"])
    want = np.asarray(digits_model.predict(body)["predictions"])
    np.testing.assert_allclose(got, want, atol=1e-5)


def content(fake: FakeConnect, name: str) -> dict[str, Any]:
    """The fake's content item called ``name``."""
    return next(c for c in fake.content_items() if c["name"] == name)


def test_deploy_creates_the_content_uploads_and_streams_the_task_log(
    targets: Targets,
    fake_connect: FakeConnect,
    model_name: str,
    digits_bundle: Bundle,
    digits_instances: list[Any],
    digits_model: Any,
) -> None:
    progress = Recorder()
    target = targets(model_name, progress, title="Digits classifier", access_type="logged_in")

    result = target.deploy(digits_bundle)

    item = content(fake_connect, model_name)
    assert item["title"] == "Digits classifier" and item["access_type"] == "logged_in"
    assert item["app_mode"] == "tensorflow-saved-model"
    assert PREFIX in item["description"] and digits_bundle.manifest.digest in item["description"]
    [bundle] = fake_connect.bundles(item["guid"])
    assert bundle["active"] and str(bundle["id"]) == item["bundle_id"]
    upload = next(r for r in fake_connect.requests if r.step == "bundle-upload")
    assert upload.chunked and result.bytes_sent == upload.bytes_received == bundle["size"]
    assert progress.advances[-1] == (bundle["size"], bundle["size"])
    # Connect's task log, line by line, as the fake wrote it.
    task = fake_connect.tasks()[-1]
    assert progress.lines == task["output"]
    assert f"Bundle {bundle['id']} is now active" in progress.lines
    assert progress.heartbeats >= 1
    status = result.status
    assert (status.state, status.version, status.digest) == (
        "serving",
        str(bundle["id"]),
        digits_bundle.manifest.digest,
    )
    assert status.url == item["content_url"]
    assert status.detail is not None
    assert item["guid"] in status.detail and item["dashboard_url"] in status.detail
    assert f"last task {task['id']}: succeeded" in status.detail
    assert target.status() == status
    instances_answer(target, digits_instances, digits_model)


def test_an_unchanged_redeploy_sends_nothing_and_plan_says_noop(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    target = targets(model_name)
    first = target.deploy(digits_bundle)
    fake_connect.clear_requests()
    tasks = len(fake_connect.tasks())

    again = targets(model_name).deploy(digits_bundle)
    plan = targets(model_name).plan(digits_bundle)

    assert (again.changed, again.bytes_sent) == (False, 0)
    assert again.status.version == first.status.version
    assert sum(r.bytes_received for r in fake_connect.requests) == 0
    assert {r.method for r in fake_connect.requests} == {"GET"}
    assert (plan.action, plan.changes) == ("noop", ())
    assert len(fake_connect.tasks()) == tasks


def test_plan_says_what_a_deploy_would_change(
    targets: Targets, model_name: str, digits_bundle: Bundle, digits_bundle_changed: Bundle
) -> None:
    target = targets(model_name)
    created = target.plan(digits_bundle)
    target.deploy(digits_bundle)
    retitled = targets(model_name, title="New title").plan(digits_bundle)
    changed = target.plan(digits_bundle_changed)

    assert created.action == "create"
    assert created.changes[0].startswith(f"create content {model_name!r} on http://")
    assert retitled.action == "update"
    assert retitled.changes == (f"title: {model_name!r} -> 'New title'",)
    assert changed.action == "update"
    assert changed.current_digest == digits_bundle.manifest.digest
    assert changed.new_digest == digits_bundle_changed.manifest.digest
    assert changed.changes == (
        f"upload a tensorflow-mode bundle of {digits_bundle_changed.manifest.digest} and deploy it",
    )


def test_a_title_change_updates_the_content_without_a_new_bundle(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    first = targets(model_name).deploy(digits_bundle)
    tasks = len(fake_connect.tasks())
    result = targets(model_name, title="Renamed").deploy(digits_bundle)

    assert (result.changed, result.bytes_sent) == (True, 0)
    assert result.status.version == first.status.version
    assert content(fake_connect, model_name)["title"] == "Renamed"
    assert len(fake_connect.tasks()) == tasks


def test_a_failed_task_fails_with_its_code_and_text_and_the_previous_bundle_serves(
    targets: Targets,
    fake_connect: FakeConnect,
    model_name: str,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
    digits_instances: list[Any],
    digits_model: Any,
) -> None:
    first = targets(model_name).deploy(digits_bundle)
    fake_connect.fail("deploy", "failed-task", message="Unable to install the packages")
    progress = Recorder()

    with pytest.raises(TargetError) as failed:
        targets(model_name, progress).deploy(digits_bundle_changed)

    error = failed.value
    assert "failed (code 1): Unable to install the packages" in error.message
    assert not error.retryable
    assert error.hint is not None and f"bundle {first.status.version} keeps serving" in error.hint
    assert "Error: Unable to install the packages" in progress.lines  # the task's log, streamed
    after = targets(model_name).status()
    assert (after.version, after.digest) == (first.status.version, digits_bundle.manifest.digest)
    assert "failed (code 1): Unable to install the packages" in (after.detail or "")
    # The failed bundle is withdrawn: only the serving one is left.
    guid = content(fake_connect, model_name)["guid"]
    assert [str(b["id"]) for b in fake_connect.bundles(guid)] == [first.status.version]
    instances_answer(targets(model_name), digits_instances, digits_model)

    rerun = targets(model_name).deploy(digits_bundle_changed)

    assert rerun.changed and rerun.status.digest == digits_bundle_changed.manifest.digest


def test_a_500_from_connect_is_retryable_leaves_nothing_and_a_retry_deploys(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    fake_connect.fail("bundle-upload", "500", message="the disk is full")

    with pytest.raises(RemoteError) as failed:
        targets(model_name).deploy(digits_bundle)

    assert failed.value.retryable and failed.value.status == 500
    assert (
        "upload the bundle" in failed.value.message and "the disk is full" in failed.value.message
    )
    guid = content(fake_connect, model_name)["guid"]
    assert fake_connect.bundles(guid) == []
    result = targets(model_name).deploy(digits_bundle)
    assert result.status.state == "serving"


def test_the_operations_retry_a_500_until_the_deploy_succeeds(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    from tfdeploy.deployment.runner import with_retries

    fake_connect.fail("deploy", "500", times=2)
    target = targets(model_name)

    result = with_retries(lambda: target.deploy(digits_bundle), timeout=60)

    assert result.status.digest == digits_bundle.manifest.digest
    guid = content(fake_connect, model_name)["guid"]
    # The bundle uploaded before the first 500 was deployed again, not uploaded twice.
    assert len(fake_connect.bundles(guid)) == 1
    assert [r.step for r in fake_connect.requests].count("bundle-upload") == 1


def test_errors_while_polling_the_task_do_not_fail_the_deploy(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    fake_connect.fail("task", "500", times=2)
    progress = Recorder()

    result = targets(model_name, progress).deploy(digits_bundle)

    assert result.status.state == "serving"
    assert sum("asking again" in step for step in progress.steps) == 2


def test_a_task_that_never_ends_times_out_and_deploying_again_finishes_the_job(
    targets: Targets,
    fake_connect: FakeConnect,
    model_name: str,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
) -> None:
    first = targets(model_name).deploy(digits_bundle)
    fake_connect.fail("deploy", "timeout")

    with pytest.raises(TargetError) as late:
        targets(model_name, wait_timeout=2).deploy(digits_bundle_changed)

    assert late.value.code == "DEADLINE_EXCEEDED" and not late.value.retryable
    assert "did not end within 2 s" in late.value.message
    assert "run deploy again" in (late.value.hint or "")
    still = targets(model_name).status()
    assert (still.state, still.version) == ("pending", first.status.version)
    assert still.digest == digits_bundle.manifest.digest

    rerun = targets(model_name).deploy(digits_bundle_changed)

    assert rerun.changed and rerun.bytes_sent == 0  # the uploaded bundle is deployed again
    assert rerun.status.digest == digits_bundle_changed.manifest.digest


def test_a_request_that_gets_no_answer_is_a_retryable_timeout(
    targets: Targets, fake_connect: FakeConnect, model_name: str
) -> None:
    fake_connect.fail("content-list", "timeout")

    with pytest.raises(RemoteError) as late:
        targets(model_name, request_timeout=1).status()

    assert late.value.code == "DEADLINE_EXCEEDED" and late.value.retryable
    assert fake_connect.url in late.value.message


def test_a_server_that_is_not_there_is_an_error_at_once(
    connect_api_key: str, model_name: str
) -> None:
    from tfdeploy_connect import ConnectConfig, ConnectTarget

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = ConnectConfig(server=f"http://127.0.0.1:{port}", api_key=connect_api_key)
    target = ConnectTarget(config, name="gone", model_name=model_name)

    started = time.monotonic()
    with pytest.raises(RemoteError) as refused:
        target.status()

    assert time.monotonic() - started < 5
    # Refused is known at once: the operations do not retry it.
    assert not refused.value.retryable and refused.value.code == "UNAVAILABLE"
    assert refused.value.message == f"cannot reach http://127.0.0.1:{port}: connection refused"


def test_a_refused_key_is_a_clear_error_that_says_how_to_make_one(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    targets(model_name).deploy(digits_bundle)
    wrong = "wrong-key-" + "9" * 20
    target = targets(model_name, api_key=wrong)

    for call in (
        target.status,
        lambda: target.deploy(digits_bundle),
        lambda: target.plan(digits_bundle),
    ):
        with pytest.raises(TfdeployError) as refused:
            call()
        assert refused.value.code == "UNAUTHENTICATED" and not refused.value.retryable
        assert refused.value.message.startswith("the API key was refused by http://")
        assert "API Keys" in (refused.value.hint or "")
        assert wrong not in refused.value.describe()
    # predict sends the key to the content URL, which refuses it the same way.
    target._content_url = content(fake_connect, model_name)["content_url"]
    with pytest.raises(TfdeployError, match="the API key was refused"):
        target.predict({"instances": [[0.0] * 64]})


def test_rollback_keeps_the_replaced_bundle_so_it_can_roll_forward(
    targets: Targets,
    fake_connect: FakeConnect,
    model_name: str,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
) -> None:
    first = targets(model_name).deploy(digits_bundle).status.version
    second = targets(model_name).deploy(digits_bundle_changed).status.version
    assert first is not None and second is not None

    back = targets(model_name).rollback()

    assert (back.version, back.digest) == (first, digits_bundle.manifest.digest)
    assert {v.version: v.state for v in back.versions} == {second: "absent", first: "serving"}
    # Deploying the newer model again needs no upload: Connect holds its bundle.
    plan = targets(model_name).plan(digits_bundle_changed)
    assert plan.changes == (
        f"deploy bundle {second} again (Connect holds it already: nothing to upload)",
    )
    forward = targets(model_name).rollback(to=second)
    assert (forward.version, forward.digest) == (second, digits_bundle_changed.manifest.digest)
    with pytest.raises(TargetError, match=f"has no bundle '999' \\(bundles: {first}, {second}\\)"):
        targets(model_name).rollback(to="999")
    back_again = targets(model_name).rollback()
    redeploy = targets(model_name).deploy(digits_bundle_changed)
    assert back_again.version == first
    assert (redeploy.changed, redeploy.bytes_sent, redeploy.status.version) == (True, 0, second)
    guid = content(fake_connect, model_name)["guid"]
    assert len(fake_connect.bundles(guid)) == 2


def test_rollback_with_discard_deletes_the_bundle_it_replaces(
    targets: Targets,
    fake_connect: FakeConnect,
    model_name: str,
    digits_bundle: Bundle,
    digits_bundle_changed: Bundle,
) -> None:
    first = targets(model_name).deploy(digits_bundle).status.version
    second = targets(model_name).deploy(digits_bundle_changed).status.version

    back = targets(model_name).rollback(discard=True)

    assert (back.version, back.digest) == (first, digits_bundle.manifest.digest)
    guid = content(fake_connect, model_name)["guid"]
    assert [b["id"] for b in fake_connect.bundles(guid)] == [first]
    with pytest.raises(TargetError, match=f"has no bundle '{second}'"):
        targets(model_name).rollback(to=second)
    # The newer model comes back only by uploading it again.
    assert targets(model_name).deploy(digits_bundle_changed).bytes_sent > 0


def test_rollback_with_one_bundle_or_nothing_deployed_says_why(
    targets: Targets, model_name: str, digits_bundle: Bundle
) -> None:
    with pytest.raises(TargetError, match="nothing is deployed"):
        targets(model_name).rollback()
    only = targets(model_name).deploy(digits_bundle).status.version
    with pytest.raises(TargetError, match=f"bundle {only} is the oldest bundle"):
        targets(model_name).rollback()


def test_undeploy_deletes_the_content_and_its_bundles(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    targets(model_name).deploy(digits_bundle)
    progress = Recorder()

    gone = targets(model_name, progress).undeploy()

    assert gone.state == "absent"
    assert [c for c in fake_connect.content_items() if c["name"] == model_name] == []
    assert targets(model_name).status().state == "absent"
    assert targets(model_name).undeploy().state == "absent"  # nothing left: nothing to do
    assert any("deleting content" in step and "1 bundles" in step for step in progress.steps)


def foreign_content(fake: FakeConnect, key: str, name: str, *, with_bundle: bool) -> str:
    """Content that rsconnect-python's client made, not tfdeploy; its guid."""
    client = RSConnectClient(RSConnectServer(fake.url, key))
    guid = str(client.content_create(name)["guid"])
    if with_bundle:
        client.upload_bundle(guid, io.BytesIO(static_bundle()))
    return guid


def test_content_that_tfdeploy_did_not_publish_is_left_alone(
    targets: Targets,
    fake_connect: FakeConnect,
    connect_api_key: str,
    model_name: str,
    digits_bundle: Bundle,
) -> None:
    guid = foreign_content(fake_connect, connect_api_key, model_name, with_bundle=True)
    target = targets(model_name)

    for call in (lambda: target.deploy(digits_bundle), target.undeploy, target.rollback):
        with pytest.raises(TargetError, match="was not published by tfdeploy"):
            call()
    assert "not published by tfdeploy" in (target.status().detail or "")
    assert len(fake_connect.bundles(guid)) == 1


def test_empty_content_of_the_same_name_is_taken_over(
    targets: Targets,
    fake_connect: FakeConnect,
    connect_api_key: str,
    model_name: str,
    digits_bundle: Bundle,
) -> None:
    guid = foreign_content(fake_connect, connect_api_key, model_name, with_bundle=False)

    result = targets(model_name).deploy(digits_bundle)

    assert result.status.state == "serving"
    assert content(fake_connect, model_name)["guid"] == guid


def test_another_mode_on_the_same_content_is_refused_before_anything_is_sent(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    targets(model_name).deploy(digits_bundle)
    fake_connect.clear_requests()

    with pytest.raises(TargetError, match="tensorflow-saved-model content, and mode app") as err:
        targets(model_name, mode="app").deploy(digits_bundle)

    assert "another name" in (err.value.hint or "")
    assert {r.method for r in fake_connect.requests} == {"GET"}


def test_the_content_name_defaults_to_the_model_name_and_can_be_set(
    targets: Targets, fake_connect: FakeConnect, model_name: str, digits_bundle: Bundle
) -> None:
    targets(model_name, name=f"{model_name}-prod").deploy(digits_bundle)

    assert content(fake_connect, f"{model_name}-prod")["title"] == model_name
    assert targets(model_name).status().state == "absent"
    with pytest.raises(TfdeployError, match="cannot be a Connect content name"):
        targets("ab").status()


def test_the_key_and_secret_values_stay_out_of_rsconnects_debug_log(
    targets: Targets,
    fake_connect: FakeConnect,
    connect_api_key: str,
    model_name: str,
    digits_bundle: Bundle,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "tok-" + "8" * 28
    caplog.set_level(logging.DEBUG, logger="rsconnect")
    progress = Recorder()
    target = targets(model_name, progress, mode="app", environment={"API_TOKEN": secret})
    fake_connect.fail("deploy", "failed-task", message="Unable to install the packages")

    with pytest.raises(TargetError) as failed:
        target.deploy(digits_bundle)  # the variables are set, the task fails before any app
    with pytest.raises(TfdeployError) as refused:
        targets(model_name, api_key="wrong-" + connect_api_key).status()

    captured = capfd.readouterr()
    logged = caplog.text
    assert "PATCH" in logged and "/environment" in logged  # the debug log saw the variables
    assert fake_connect.env_names(content(fake_connect, model_name)["guid"]) == ["API_TOKEN"]
    texts = [
        logged,
        captured.out,
        captured.err,
        progress.text(),
        failed.value.describe(),
        refused.value.describe(),
        json.dumps(targets(model_name, mode="app").status().to_dict()),
        json.dumps(fake_connect.content_items()),
    ]
    for value in (connect_api_key, secret):
        assert not [text for text in texts if value in text]
