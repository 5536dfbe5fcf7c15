"""Mode app from the command line, as a user runs it: the bundle's app really serves.

One deploy.yaml target publishes the digits model once for the whole module (the fake starts
the bundle's app, tfdeploy's own server, in a fresh process on this interpreter); the tests
then use that content through the CLI and over HTTP. The API key and a secret environment value
are checked to appear in no output, error, traceback, task log, content field or bundle.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rsconnect.api import RSConnectClient, RSConnectServer
from tests.connect.fake_connect import FakeConnect

from tfdeploy.plugin import Bundle
from tfdeploy.testing.cli import CLI, Run

SECRET = "s3cret-" + uuid.uuid4().hex


@dataclass
class Published:
    """The module's project, its CLI, the first deploy, and every run made so far."""

    root: Path
    cli: CLI
    name: str
    key: str
    fake: FakeConnect
    deploy: Run
    runs: list[Run] = field(default_factory=list)

    def __call__(self, *args: str, **env: str) -> Run:
        """Run ``tfdeploy ARGS`` in the project (with extra environment variables)."""
        saved = dict(self.cli.env)
        self.cli.env.update(env)
        try:
            run = self.cli(*args)
        finally:
            self.cli.env = saved
        self.runs.append(run)
        return run

    @property
    def item(self) -> dict[str, Any]:
        """The content item on the fake."""
        return next(c for c in self.fake.content_items() if c["name"] == self.name)

    def call(self, path: str, body: Any = None, *, key: str | None = "") -> tuple[int, bytes]:
        """One request to the content (with the key unless ``key`` is None)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Key {key or self.key}"
        request = urllib.request.Request(self.item["content_url"] + path, data, headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    fake_connect_server: FakeConnect,
    connect_api_key: str,
    digits_savedmodel: Path,
    digits_instances: list[Any],
) -> Iterator[Published]:
    """The digits model published in mode app by ``tfdeploy deploy``, once for the module."""
    import shutil

    root = tmp_path_factory.mktemp("app-project")
    shutil.copytree(digits_savedmodel, root / "savedmodel")
    (root / "instances.json").write_text(json.dumps(digits_instances))
    name = f"digits-app-{uuid.uuid4().hex[:8]}"
    target = {
        "plugin": "connect",
        "server": fake_connect_server.url,
        "api_key": "${CONNECT_API_KEY}",
        "name": name,
        "title": "Digits",
        "environment": {"GREETING": "hello", "SERVICE_TOKEN": "${SERVICE_TOKEN}"},
    }
    config = {
        "model": {"path": "savedmodel", "name": "digits", "instances": "instances.json"},
        "targets": {"connect": target},
    }
    (root / "deploy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cli = CLI(root)
    cli.env.update(CONNECT_API_KEY=connect_api_key, SERVICE_TOKEN=SECRET)
    deploy = cli("deploy", "--target", "connect", "--yes", "--json", "--no-validate")
    published = Published(root, cli, name, connect_api_key, fake_connect_server, deploy, [deploy])
    yield published
    published("undeploy", "--target", "connect", "--yes")


def outcome(run: Run) -> dict[str, Any]:
    """The one target's outcome of a --json run."""
    [target] = json.loads(run.stdout)["targets"]
    return dict(target)


def test_deploy_publishes_the_app_and_status_reports_it(
    published: Published, digits_bundle: Bundle
) -> None:
    assert published.deploy.returncode == 0, published.deploy.stderr
    assert published.deploy.stderr == ""  # --json: nothing but the document
    result = outcome(published.deploy)["result"]
    assert result["changed"] and result["bytes_sent"] > 0
    assert not published.deploy.tensorflow  # --no-validate: publishing needs no TensorFlow

    status = published("status", "--target", "connect", "--json")

    assert status.returncode == 0 and not status.tensorflow
    st = outcome(status)["result"]
    item = published.item
    assert item["app_mode"] == "python-fastapi" and item["title"] == "Digits"
    assert (st["state"], st["version"], st["digest"]) == (
        "serving",
        item["bundle_id"],
        digits_bundle.manifest.digest,
    )
    assert st["url"] == item["content_url"]
    assert "last task" in st["detail"] and "succeeded" in st["detail"]


def test_the_content_answers_the_routes_of_tfdeploy_serve(
    published: Published, digits_instances: list[Any], digits_model: Any
) -> None:
    want = digits_model.predict({"instances": digits_instances})["predictions"]
    body = {"instances": digits_instances}

    status, answer = published.call("v1/models/digits:predict", body)
    assert status == 200, answer
    np.testing.assert_allclose(json.loads(answer)["predictions"], want, atol=1e-5)
    # The R package's route answers every output keyed by its name.
    status, answer = published.call("serving_default/predict", body)
    assert status == 200, answer
    rows = json.loads(answer)["predictions"]
    np.testing.assert_allclose([row["prediction"] for row in rows], want, atol=1e-5)
    model_status, raw = published.call("v1/models/digits")
    assert model_status == 200
    assert json.loads(raw)["model_version_status"][0]["state"] == "AVAILABLE"
    spec_status, spec = published.call("openapi.json")
    assert spec_status == 200 and "/serving_default/predict" in json.loads(spec)["paths"]
    page_status, page = published.call("")
    assert page_status == 200 and b"<html" in page.lower()
    # The docs page's links work under the content URL's path prefix.
    links = re.findall(r'(?:href|src)="([^"]+)"', page.decode())
    assert links and not [link for link in links if link.startswith("/")]
    assert {link: published.call(link)[0] for link in links} == dict.fromkeys(links, 200)
    assert published.call("serving_default/predict", body, key=None)[0] == 401


def test_verify_and_predict_go_through_the_bundled_app(published: Published) -> None:
    verify = published("verify", "--target", "connect")
    predict = published("predict", "--target", "connect", "--input", "instances.json", "--json")

    assert verify.returncode == 0, verify.stderr
    assert "connect: OK" in verify.stdout
    assert predict.returncode == 0, predict.stderr
    assert len(json.loads(predict.stdout)["predictions"]) == 5


def test_an_unchanged_redeploy_sends_nothing(
    published: Published, fake_connect: FakeConnect
) -> None:
    plan = published("plan", "--target", "connect", "--json")
    again = published("deploy", "--target", "connect", "--yes", "--json", "--no-validate")

    assert outcome(plan)["result"]["action"] == "noop"
    result = outcome(again)["result"]
    assert (result["changed"], result["bytes_sent"]) == (False, 0)
    assert sum(r.bytes_received for r in fake_connect.requests) == 0


def environ(pid: int) -> dict[str, str]:
    """A process's environment, as Linux shows it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_the_app_gets_its_environment_and_not_the_publishers_key(
    published: Published, fake_connect: FakeConnect
) -> None:
    [pid] = fake_connect.app_pids(published.item["guid"])
    seen = environ(pid)

    assert seen["GREETING"] == "hello" and seen["SERVICE_TOKEN"] == SECRET
    assert "CONNECT_API_KEY" not in seen
    assert published.key not in "".join(seen.values())


def test_a_new_secret_value_restarts_the_same_bundle_without_an_upload(
    published: Published, fake_connect: FakeConnect
) -> None:
    renewed = SECRET + "-renewed"
    bundle = published.item["bundle_id"]
    [old_pid] = fake_connect.app_pids(published.item["guid"])

    plan = published("plan", "--target", "connect", SERVICE_TOKEN=renewed)
    deploy = published(
        "deploy", "--target", "connect", "--yes", "--json", "--no-validate", SERVICE_TOKEN=renewed
    )

    assert "set environment variables GREETING, SERVICE_TOKEN" in plan.stdout
    assert f"deploy bundle {bundle} again" in plan.stdout
    result = outcome(deploy)["result"]
    assert (result["changed"], result["bytes_sent"]) == (True, 0)
    assert result["status"]["version"] == bundle
    [pid] = fake_connect.app_pids(published.item["guid"])
    assert pid != old_pid and environ(pid)["SERVICE_TOKEN"] == renewed
    published.cli.env["SERVICE_TOKEN"] = renewed  # what the module's later runs use


def test_the_key_and_the_secret_appear_in_no_output_error_traceback_log_or_bundle(
    published: Published, fake_connect: FakeConnect, tmp_path: Path
) -> None:
    wrong_key = "wrong-" + uuid.uuid4().hex
    debug = {"TFDEPLOY_DEBUG": "1"}
    refused = published("status", "--target", "connect", CONNECT_API_KEY=wrong_key, **debug)
    traced = published(
        "predict", "--target", "connect", "--input", "instances.json",
        CONNECT_API_KEY=wrong_key, **debug,
    )  # fmt: skip
    fake_connect.fail("content-list", "500")
    retried = published("status", "--target", "connect", "-v", **debug)
    fake_connect.fail("deploy", "failed-task", message="Unable to install the packages")
    failed = published(
        "deploy", "--target", "connect", "--yes", "--no-validate", "-C", "python=>=3.10", **debug
    )
    human = published("status", "--target", "connect")

    assert refused.returncode == 1 and "the API key was refused" in refused.stderr
    assert traced.returncode == 1 and "Traceback (most recent call last)" in traced.stderr
    assert "the API key was refused" in traced.stderr
    assert retried.returncode == 0 and "retrying in" in retried.stderr
    assert failed.returncode == 1
    assert "failed (code 1): Unable to install the packages" in failed.stderr
    assert "[connect] | Error: Unable to install the packages" in failed.stderr  # streamed
    assert human.returncode == 0 and "serving" in human.stdout
    client = RSConnectClient(RSConnectServer(fake_connect.url, published.key))
    guid = published.item["guid"]
    archives = [
        client.bundle_download(guid, b["id"]).response_body for b in fake_connect.bundles(guid)
    ]
    unpacked = []
    for archive in archives:
        assert isinstance(archive, bytes)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            unpacked += [tar.extractfile(m).read() for m in tar if m.isfile()]  # type: ignore[union-attr]
    texts = [
        *(run.stdout + run.stderr for run in published.runs),
        json.dumps(fake_connect.content_items()),
        json.dumps(fake_connect.tasks()),
        repr(fake_connect.requests),
    ]
    assert archives and unpacked
    for secret in (published.key, wrong_key, SECRET):
        assert not [text for text in texts if secret in text]
        assert not [data for data in [*archives, *unpacked] if secret.encode() in data]
