"""The fake Connect server, driven through rsconnect-python's own client over a socket.

Each test uses what the library really does (``RSConnectServer`` + ``RSConnectClient``, its
bundle and manifest functions, its task polling) and checks what a publisher would see: the
answers, the errors the library raises, the content that serves afterwards.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pytest
from rsconnect.api import (
    RSConnectClient,
    RSConnectServer,
    server_supports_draft_deploy,
    verify_api_key_response,
)
from rsconnect.bundle import make_api_bundle, make_tensorflow_bundle
from rsconnect.environment import Environment
from rsconnect.exception import RSConnectException
from rsconnect.http_support import HTTPResponse
from rsconnect.models import AppModes
from tests.connect.fake_connect import FakeConnect

#: A tiny ASGI app (what Connect's python-fastapi mode runs): it answers every request with
#: what it saw, so a test can tell which bundle, process and environment served it.
APP = """\
import json
import os

RELEASE = {release!r}
{crash}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({{"type": f"lifespan.{{kind}}.complete"}})
            if kind == "shutdown":
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    seen = {{
        "release": RELEASE,
        "pid": os.getpid(),
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "body": body.decode(),
        "greeting": os.environ.get("GREETING"),
        "environ": sorted(os.environ),
        "headers": sorted(k.decode() for k, _ in scope["headers"]),
    }}
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": json.dumps(seen).encode()}})
"""


@pytest.fixture(scope="module")
def python_environment(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """rsconnect-python's description of this interpreter, made by its own inspector."""
    directory = tmp_path_factory.mktemp("environment")
    (directory / "requirements.txt").write_text("uvicorn\n")
    return Environment.create_python_environment(str(directory))


@pytest.fixture
def client(fake_connect: FakeConnect, connect_api_key: str) -> RSConnectClient:
    """rsconnect-python's client for the fake, with the valid key."""
    return RSConnectClient(RSConnectServer(fake_connect.url, connect_api_key))


class Apps:
    """Makes app bundles with rsconnect-python's ``make_api_bundle``."""

    def __init__(self, root: Path, environment: Environment) -> None:
        self.root = root
        self.environment = environment

    def bundle(self, release: str, *, crash: str | None = None) -> IO[bytes]:
        """A python-fastapi bundle of :data:`APP`; ``crash`` is raised when it is imported."""
        directory = self.root / f"{release}-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        (directory / "requirements.txt").write_text(self.environment.contents)
        raise_line = f"raise RuntimeError({crash!r})" if crash else ""
        (directory / "app.py").write_text(APP.format(release=release, crash=raise_line))
        return make_api_bundle(
            str(directory), "app:app", AppModes.PYTHON_FASTAPI, self.environment, [], []
        )


@pytest.fixture
def apps(tmp_path: Path, python_environment: Environment) -> Apps:
    """Builds app bundles in this test's directory."""
    return Apps(tmp_path, python_environment)


def new_content(client: RSConnectClient) -> dict[str, Any]:
    """A fresh content item with a unique name."""
    return dict(client.content_create(f"tfdeploy-{uuid.uuid4().hex[:10]}"))


def deploy(client: RSConnectClient, guid: str, bundle_id: str) -> tuple[list[str], Any]:
    """Deploy a bundle and wait for the task as rsconnect does; returns (log lines, task)."""
    task_id = client.content_deploy(guid, bundle_id)["task_id"]
    log: list[str] = []
    _, task = client.wait_for_task(task_id, log.append, timeout=60)
    return log, task


def call(
    url: str, key: str | None, *, method: str = "GET", body: bytes | None = None
) -> tuple[int, Any]:
    """One request to a content URL; returns the status and the decoded JSON answer."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Key {key}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def delete(client: RSConnectClient, path: str) -> HTTPResponse:
    """``DELETE /__api__/<path>`` as rsconnect's own delete helpers do it (1.32 has none for
    content or bundles); raises RSConnectException for an error answer."""
    response = cast(HTTPResponse, client.delete(path, decode_response=False))
    return client._server.handle_bad_response(response, is_httpresponse=True)


def static_bundle() -> bytes:
    """A bundle the fake accepts but cannot run (app mode ``static``): its task fails at once."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        manifest = json.dumps({"version": 1, "metadata": {"appmode": "static"}}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return data.getvalue()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- server information and the key ----------------------------------------------------------


def test_server_settings_say_connect_2024_with_this_python(client: RSConnectClient) -> None:
    settings = client.server_settings()
    python = client.python_settings()

    assert settings["version"].startswith("2024.")
    assert not server_supports_draft_deploy(settings["version"])  # so no "activate" field
    here = ".".join(map(str, sys.version_info[:3]))
    assert [i["version"] for i in python["installations"]] == [here]
    assert python["api_enabled"] is True


def test_a_valid_key_names_its_user(client: RSConnectClient) -> None:
    user = verify_api_key_response(client)

    assert user is not None
    assert user["username"] == "pat"
    assert user["user_role"] == "publisher"


@pytest.mark.parametrize("key", ["not-the-key", None], ids=["wrong-key", "no-key"])
def test_a_bad_or_missing_key_is_a_401_on_every_api_call(
    fake_connect: FakeConnect, key: str | None
) -> None:
    client = RSConnectClient(RSConnectServer(fake_connect.url, key))

    with pytest.raises(RSConnectException, match="The specified API key is not valid"):
        verify_api_key_response(client)
    for call_api in (client.server_settings, client.content_list, lambda: client.task_get("x")):
        with pytest.raises(RSConnectException, match="requires authentication") as err:
            call_api()
        assert err.value.status == 401
    assert [r.status for r in fake_connect.requests] == [401] * 4


# --- content and environment variables --------------------------------------------------------


def test_content_is_created_found_by_name_updated_and_deleted(
    client: RSConnectClient, fake_connect: FakeConnect
) -> None:
    item = new_content(client)
    guid = item["guid"]

    assert item["content_url"] == f"{fake_connect.url}/content/{guid}/"
    assert item["bundle_id"] is None and item["app_mode"] == "unknown"
    assert [c["guid"] for c in client.content_list({"name": item["name"]})] == [guid]
    assert client.content_list({"name": item["name"] + "-other"}) == []
    assert client.content_update(guid, {"title": "Digits"})["title"] == "Digits"
    assert client.content_get(guid)["title"] == "Digits"
    with pytest.raises(RSConnectException, match="already exists") as duplicate:
        client.content_create(item["name"])
    assert duplicate.value.status == 409
    with pytest.raises(RSConnectException, match="content name") as invalid:
        client.content_create("a/b")
    assert invalid.value.status == 400

    assert delete(client, f"v1/content/{guid}").status == 204
    with pytest.raises(RSConnectException, match="does not exist") as gone:
        client.content_get(guid)
    assert gone.value.status == 404


def test_environment_answers_names_never_values(
    client: RSConnectClient, fake_connect: FakeConnect
) -> None:
    guid = new_content(client)["guid"]
    secret = "s3cret-" + uuid.uuid4().hex

    names = client.add_environment_vars(guid, [("GREETING", "hello"), ("TOKEN", secret)])
    listed = client.get(f"v1/content/{guid}/environment")

    assert names == listed == ["GREETING", "TOKEN"]
    assert secret not in json.dumps(listed)
    assert secret not in json.dumps(client.content_get(guid))
    unset = cast(list[tuple[str, str]], [("TOKEN", None)])  # a null value deletes
    assert client.add_environment_vars(guid, unset) == ["GREETING"]
    assert fake_connect.env_names(guid) == ["GREETING"]


# --- app mode ---------------------------------------------------------------------------------


def test_an_app_bundle_is_uploaded_chunked_and_really_runs(
    client: RSConnectClient,
    fake_connect: FakeConnect,
    connect_api_key: str,
    apps: Apps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECT_API_KEY", connect_api_key)  # the publisher's environment
    item = new_content(client)
    guid = item["guid"]
    client.add_environment_vars(guid, [("GREETING", "hello from the content")])
    tarball = apps.bundle("r1")
    archive = tarball.read()
    tarball.seek(0)

    bundle = cast(dict[str, Any], client.upload_bundle(guid, tarball))
    task_id = client.content_deploy(guid, bundle["id"])["task_id"]
    pieces: list[list[str]] = []
    first = 0
    while True:  # rsconnect's polling, with wait=0 so each answer shows what is new
        task = client.task_get(task_id, first=first, wait=0)
        if task["output"]:
            pieces.append(task["output"])
        first = task["last"]
        if task["finished"]:
            break
        time.sleep(0.02)
    status, seen = call(
        item["content_url"] + "echo/here?x=1", connect_api_key, method="POST", body=b"{}"
    )

    upload = next(r for r in fake_connect.requests if r.step == "bundle-upload")
    assert upload.chunked and upload.bytes_received == len(archive) == bundle["size"]
    assert task["code"] == 0 and task["error"] == ""
    assert len(pieces) > 1
    streamed = [line for piece in pieces for line in piece]
    assert streamed == fake_connect.task(task_id)["output"]
    assert first == len(streamed)
    assert "Launching Python FastAPI application app:app" in streamed
    content = client.content_get(guid)
    assert content["bundle_id"] == bundle["id"]
    assert content["app_mode"] == "python-fastapi"
    assert [b["active"] for b in fake_connect.bundles(guid)] == [True]
    assert client.bundle_download(guid, bundle["id"]).response_body == archive
    assert status == 200
    assert seen["release"] == "r1"
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST",
        "/echo/here",
        "x=1",
        "{}",
    )
    assert seen["greeting"] == "hello from the content"
    assert "authorization" not in seen["headers"]  # the key stays with the proxy
    assert "CONNECT_API_KEY" not in seen["environ"]  # and the publisher's variables too
    assert seen["pid"] in fake_connect.app_pids(guid) and seen["pid"] != os.getpid()
    assert call(item["content_url"], None)[0] == 401
    assert call(item["content_url"], "not-the-key")[0] == 401


def test_an_app_that_fails_to_start_fails_the_task_and_the_previous_bundle_serves(
    client: RSConnectClient, fake_connect: FakeConnect, connect_api_key: str, apps: Apps
) -> None:
    item = new_content(client)
    guid = item["guid"]
    good = client.upload_bundle(guid, apps.bundle("good"))
    deploy(client, guid, good["id"])
    broken = client.upload_bundle(guid, apps.bundle("broken", crash="no model file in the bundle"))
    task_id = client.content_deploy(guid, broken["id"])["task_id"]
    log: list[str] = []

    with pytest.raises(RSConnectException, match="Task exited with status 1"):
        client.wait_for_task(task_id, log.append, timeout=60)

    task = fake_connect.task(task_id)
    assert task["finished"] and task["code"] == 1
    assert "exited with code" in task["error"]
    assert any("RuntimeError: no model file in the bundle" in line for line in log)
    assert f"Error from Connect server: {task['error']}" in log
    assert client.content_get(guid)["bundle_id"] == good["id"]
    assert call(item["content_url"], connect_api_key)[1]["release"] == "good"
    assert len(fake_connect.app_pids(guid)) == 1


def test_deploying_an_earlier_bundle_again_rolls_back(
    client: RSConnectClient, fake_connect: FakeConnect, connect_api_key: str, apps: Apps
) -> None:
    item = new_content(client)
    guid = item["guid"]
    first = client.upload_bundle(guid, apps.bundle("first"))
    second = client.upload_bundle(guid, apps.bundle("second"))
    deploy(client, guid, first["id"])
    first_pid = call(item["content_url"], connect_api_key)[1]["pid"]
    deploy(client, guid, second["id"])
    second_pid = call(item["content_url"], connect_api_key)[1]["pid"]

    deploy(client, guid, first["id"])
    status, seen = call(item["content_url"], connect_api_key)

    assert status == 200 and seen["release"] == "first"
    assert client.content_get(guid)["bundle_id"] == first["id"]
    assert [(b["id"], b["active"]) for b in fake_connect.bundles(guid)] == [
        (second["id"], False),
        (first["id"], True),
    ]
    assert fake_connect.app_pids(guid) == [seen["pid"]]
    assert not pid_alive(first_pid) and not pid_alive(second_pid)
    with pytest.raises(RSConnectException, match="not allowed while the bundle is active"):
        delete(client, f"v1/content/{guid}/bundles/{first['id']}")
    assert delete(client, f"v1/content/{guid}/bundles/{second['id']}").status == 204


def test_stopping_the_fake_stops_its_apps_even_when_a_test_fails(
    tmp_path: Path, apps: Apps
) -> None:
    pids: list[int] = []

    with (
        pytest.raises(AssertionError, match="the test failed"),
        FakeConnect("key-1", workdir=tmp_path) as fake,
    ):
        client = RSConnectClient(RSConnectServer(fake.url, "key-1"))
        guid = new_content(client)["guid"]
        deploy(client, guid, client.upload_bundle(guid, apps.bundle("x"))["id"])
        pids = fake.app_pids()
        raise AssertionError("the test failed")

    assert len(pids) == 1
    assert not pid_alive(pids[0])


# --- tensorflow-saved-model mode --------------------------------------------------------------


def test_a_tensorflow_bundle_serves_the_savedmodel(
    client: RSConnectClient,
    fake_connect: FakeConnect,
    connect_api_key: str,
    tmp_path: Path,
    digits_savedmodel: Path,
    digits_model: Any,
    digits_instances: list[Any],
) -> None:
    shutil.copytree(digits_savedmodel, tmp_path / "model" / "1")
    tarball = make_tensorflow_bundle(str(tmp_path / "model"), [], [])
    with tarfile.open(fileobj=io.BytesIO(tarball.read()), mode="r:gz") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    tarball.seek(0)
    item = new_content(client)

    bundle = client.upload_bundle(item["guid"], tarball)
    log, task = deploy(client, item["guid"], bundle["id"])
    body = json.dumps({"instances": digits_instances}).encode()
    status, answer = call(
        item["content_url"] + "serving_default/predict", connect_api_key, method="POST", body=body
    )
    wrong = call(item["content_url"] + "nope/predict", connect_api_key, method="POST", body=body)

    assert manifest["metadata"]["appmode"] == "tensorflow-saved-model"
    assert "1/saved_model.pb" in manifest["files"]
    assert task["code"] == 0 and "Serving model version 1" in log
    assert client.content_get(item["guid"])["app_mode"] == "tensorflow-saved-model"
    assert status == 200
    expected = digits_model.predict({"instances": digits_instances})["predictions"]
    np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-6)
    assert wrong[0] == 400 and "nope" in wrong[1]["error"]


def test_bundle_metadata_needs_connect_2025_12(
    client: RSConnectClient, connect_api_key: str, tmp_path: Path
) -> None:
    archive = static_bundle()
    guid = new_content(client)["guid"]
    with pytest.raises(RSConnectException, match="not a gzipped tar") as old_server:
        client.upload_bundle(guid, io.BytesIO(archive), metadata={"source": "tfdeploy"})

    with FakeConnect(connect_api_key, workdir=tmp_path, version="2025.12.0") as newer:
        newer_client = RSConnectClient(RSConnectServer(newer.url, connect_api_key))
        newer_guid = new_content(newer_client)["guid"]
        bundle = newer_client.upload_bundle(
            newer_guid, io.BytesIO(archive), metadata={"source": "tfdeploy"}
        )
        downloaded = newer_client.bundle_download(newer_guid, bundle["id"]).response_body

    assert old_server.value.status == 400
    assert bundle["metadata"]["source"] == "tfdeploy"  # type: ignore[typeddict-item]
    assert downloaded == archive


def test_task_polling_honours_first_and_wait(
    client: RSConnectClient, fake_connect: FakeConnect
) -> None:
    guid = new_content(client)["guid"]
    bundle = client.upload_bundle(guid, io.BytesIO(static_bundle()))
    task_id = client.content_deploy(guid, bundle["id"])["task_id"]

    started = time.monotonic()
    task = client.task_get(task_id, first=0, wait=20)
    waited = time.monotonic() - started
    later = client.task_get(task_id, first=task["last"], wait=0)

    assert task["finished"] and waited < 5  # answered when it finished, not after 20 s
    assert task["code"] == 1 and "cannot run app mode 'static'" in task["error"]
    assert later["output"] == [] and later["last"] == task["last"]
    with pytest.raises(RSConnectException, match="wait between 0 and 20") as err:
        client.task_get(task_id, wait=21)
    assert err.value.status == 400
    with pytest.raises(RSConnectException, match="does not exist"):
        client.task_get("no-such-task")


# --- faults -----------------------------------------------------------------------------------


def upload(client: RSConnectClient, guid: str) -> Any:
    """Upload :func:`static_bundle` to content ``guid``."""
    return client.upload_bundle(guid, io.BytesIO(static_bundle()))


FAULTY_CALLS: dict[str, Callable[[RSConnectClient, str], object]] = {
    "settings": lambda c, guid: c.server_settings(),
    "user": lambda c, guid: c.me(),
    "content-list": lambda c, guid: c.content_list({"name": "x"}),
    "content-create": lambda c, guid: c.content_create(f"x-{uuid.uuid4().hex[:8]}"),
    "content-get": lambda c, guid: c.content_get(guid),
    "environment": lambda c, guid: c._server.handle_bad_response(
        c.add_environment_vars(guid, [("A", "1")])
    ),
    "bundle-upload": upload,
    "deploy": lambda c, guid: c.content_deploy(guid, upload(c, guid)["id"]),
    "task": lambda c, guid: c.task_get(c.content_deploy(guid, upload(c, guid)["id"])["task_id"]),
}
#: What rsconnect-python raises for each kind of fault.
FAULT_ERRORS = {
    "500": "Posit Connect reported an error .*: the fake Connect failed this on purpose",
    "drop": "Could not connect to .* \\(RemoteDisconnected\\)",
    "timeout": "Could not connect to .* \\((TimeoutError|timeout)\\)",
}
#: A deploy "timeout" is a task that never finishes, tested on its own below.
HTTP_FAULTS = [
    (step, kind)
    for step in FAULTY_CALLS
    for kind in FAULT_ERRORS
    if (step, kind) != ("deploy", "timeout")
]


@pytest.mark.parametrize(("step", "kind"), HTTP_FAULTS)
def test_a_fault_is_what_the_library_sees_from_a_failing_server_then_it_recovers(
    client: RSConnectClient,
    fake_connect: FakeConnect,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    kind: str,
) -> None:
    monkeypatch.setenv("CONNECT_REQUEST_TIMEOUT", "1")  # how long rsconnect waits for an answer
    guid = new_content(client)["guid"]
    fake_connect.fail(step, kind)

    with pytest.raises(RSConnectException, match=FAULT_ERRORS[kind]) as err:
        FAULTY_CALLS[step](client, guid)
    FAULTY_CALLS[step](client, guid)

    assert err.value.status == (500 if kind == "500" else None)
    assert fake_connect.pending_faults() == {}
    if step == "bundle-upload":
        assert len(fake_connect.bundles(guid)) == 1  # the failed upload left nothing behind


def test_a_failed_task_gives_its_code_and_error_and_the_active_bundle_stays(
    client: RSConnectClient, fake_connect: FakeConnect, connect_api_key: str, apps: Apps
) -> None:
    item = new_content(client)
    guid = item["guid"]
    good = client.upload_bundle(guid, apps.bundle("good"))
    deploy(client, guid, good["id"])
    fake_connect.fail("deploy", "failed-task", message="Unable to install the packages")
    newer = client.upload_bundle(guid, apps.bundle("newer"))
    log: list[str] = []
    task_id = client.content_deploy(guid, newer["id"])["task_id"]

    with pytest.raises(RSConnectException, match="Task exited with status 1"):
        client.wait_for_task(task_id, log.append, timeout=60)

    assert "Error from Connect server: Unable to install the packages" in log
    task = fake_connect.task(task_id)
    assert (task["finished"], task["code"], task["error"]) == (
        True,
        1,
        "Unable to install the packages",
    )
    assert client.content_get(guid)["bundle_id"] == good["id"]
    assert call(item["content_url"], connect_api_key)[1]["release"] == "good"
    deploy(client, guid, newer["id"])  # deploying again finishes the job
    assert call(item["content_url"], connect_api_key)[1]["release"] == "newer"


def test_a_task_that_never_finishes_times_out_and_deploying_again_finishes_the_job(
    client: RSConnectClient, fake_connect: FakeConnect, connect_api_key: str, apps: Apps
) -> None:
    item = new_content(client)
    guid = item["guid"]
    bundle = client.upload_bundle(guid, apps.bundle("late"))
    fake_connect.fail("deploy", "timeout")
    task_id = client.content_deploy(guid, bundle["id"])["task_id"]

    with pytest.raises(RSConnectException, match="The task timed out after 2 seconds"):
        client.wait_for_task(task_id, None, timeout=2, poll_wait=1)

    assert not fake_connect.task(task_id)["finished"]
    assert client.content_get(guid)["bundle_id"] is None
    _, task = deploy(client, guid, bundle["id"])
    assert task["code"] == 0
    assert call(item["content_url"], connect_api_key)[1]["release"] == "late"


def test_content_requests_fail_as_injected_then_answer_again(
    client: RSConnectClient, fake_connect: FakeConnect, connect_api_key: str, apps: Apps
) -> None:
    item = new_content(client)
    deploy(client, item["guid"], client.upload_bundle(item["guid"], apps.bundle("up"))["id"])
    fake_connect.fail("content-request", "500")
    fake_connect.fail("content-request", "drop")

    failed = call(item["content_url"], connect_api_key)
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError)):
        call(item["content_url"], connect_api_key)
    answered = call(item["content_url"], connect_api_key)

    assert failed == (
        500,
        {"code": 1, "error": "the fake Connect failed this on purpose", "payload": None},
    )
    assert answered[0] == 200 and answered[1]["release"] == "up"


def test_the_fake_never_prints_logs_or_records_the_key(
    fake_connect: FakeConnect,
    connect_api_key: str,
    apps: Apps,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = RSConnectClient(RSConnectServer(fake_connect.url, connect_api_key))
    item = new_content(client)
    fake_connect.fail("content-get", "500")
    with pytest.raises(RSConnectException):
        client.content_get(item["guid"])
    with pytest.raises(RSConnectException):
        RSConnectClient(RSConnectServer(fake_connect.url, connect_api_key + "x")).me()
    broken = client.upload_bundle(item["guid"], apps.bundle("broken", crash="boom"))
    task_id = client.content_deploy(item["guid"], broken["id"])["task_id"]
    client.wait_for_task(task_id, None, timeout=60, raise_on_error=False)
    call(item["content_url"], connect_api_key)

    captured = capfd.readouterr()
    seen = [
        captured.out,
        captured.err,
        caplog.text,
        repr(fake_connect),
        repr(fake_connect.requests),
        json.dumps(fake_connect.tasks()),
        json.dumps(fake_connect.content_items()),
    ]
    assert not [text for text in seen if connect_api_key in text]


def test_a_bundle_nested_in_one_folder_is_collapsed_as_connect_does(
    client: RSConnectClient, connect_api_key: str, apps: Apps
) -> None:
    with tarfile.open(fileobj=apps.bundle("nested"), mode="r:gz") as flat:
        members = [(m, flat.extractfile(m)) for m in flat.getmembers()]
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w:gz") as nested:
            for member, content in members:
                member.name = f"release/{member.name}"
                nested.addfile(member, content)
    item = new_content(client)
    data.seek(0)

    _, task = deploy(client, item["guid"], client.upload_bundle(item["guid"], data)["id"])

    assert task["code"] == 0
    assert call(item["content_url"], connect_api_key)[1]["release"] == "nested"


@pytest.mark.parametrize(
    ("python", "requires", "error"),
    [
        ("3.8.10", None, "requests Python 3.8.10, which this server does not offer"),
        ("3.8.10", ">=3.10", None),  # environment.python.requires wins over python.version
        (None, ">=3.99", "requests Python >=3.99, which this server does not offer"),
    ],
)
def test_the_python_a_bundle_asks_for_must_be_offered(
    client: RSConnectClient,
    apps: Apps,
    python: str | None,
    requires: str | None,
    error: str | None,
) -> None:
    apps.environment = Environment(apps.environment._data, python_version_requirement=requires)
    if python is not None:
        apps.environment.python = python
    item = new_content(client)
    bundle = client.upload_bundle(item["guid"], apps.bundle("py"))
    task_id = client.content_deploy(item["guid"], bundle["id"])["task_id"]

    _, task = client.wait_for_task(task_id, None, timeout=60, raise_on_error=False)

    if error is None:
        assert task["code"] == 0
    else:
        assert task["code"] == 1 and error in task["error"]
        assert client.content_get(item["guid"])["bundle_id"] is None
