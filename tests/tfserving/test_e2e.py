"""The tfserving target end to end against `tfdeploy serve --model-base-path` in its own process.

Over real gRPC (tensorflow-serving-api's own stubs on the client side of the load) and HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tfdeploy_tfserving import TFServingConfig, TFServingTarget

from tfdeploy.deployment.target import Progress
from tfdeploy.model.bundle import Bundle, package
from tfdeploy.testing.cli import CLI


@dataclass
class Served:
    """A `tfdeploy serve` process on a model base path, and a deploy.yaml with three targets."""

    root: Path
    url: str
    grpc: str
    process: subprocess.Popen[str]
    config: Path
    log: list[str] = field(default_factory=list)

    def target(self, **settings: Any) -> TFServingTarget:
        config = TFServingConfig(
            base_path=str(self.root / "models"), grpc=self.grpc, wait_timeout=60, **settings
        )
        return TFServingTarget(config, name="grpc", model_name="digits")

    def versions_on_server(self) -> dict[int, str]:
        """{version: state}, asked with tensorflow-serving-api's real stub."""
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        with grpc.insecure_channel(self.grpc) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "digits"
            answer = stub.GetModelStatus(request, timeout=10)
        names = get_model_status_pb2.ModelVersionStatus.State.Name
        return {s.version: names(s.state) for s in answer.model_version_status}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    digits_bundle: Bundle,
    digits_savedmodel: Path,
    digits_instances: list[Any],
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    TFServingTarget(
        TFServingConfig(base_path=str(root / "models")), name="seed", model_name="digits"
    ).deploy(digits_bundle)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfdeploy",
            "serve",
            "--model-base-path",
            str(root / "models" / "digits"),
            "--model-name",
            "digits",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--file-system-poll-wait-seconds",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    url = grpc_address = None
    log: list[str] = []
    deadline = time.monotonic() + 120
    while (url is None or grpc_address is None) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        log.append(line)
        if m := re.search(r"Starting server under (\S+)", line):
            url = m.group(1)
        if m := re.search(r"^gRPC: (\S+)", line):
            grpc_address = m.group(1)
    assert url and grpc_address, f"the server did not start: {''.join(log)}"
    threading.Thread(target=process.stdout.read, daemon=True).start()
    shutil.copytree(digits_savedmodel, root / "savedmodel")
    (root / "instances.json").write_text(json.dumps(digits_instances))
    config = root / "deploy.yaml"
    models = str(root / "models")
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"path": "savedmodel", "name": "digits", "instances": "instances.json"},
                "targets": {
                    "grpc": {"plugin": "tfserving", "base_path": models, "grpc": grpc_address},
                    "rest": {
                        "plugin": "tfserving",
                        "base_path": models,
                        "rest_url": url,
                        "protocol": "rest",
                    },
                    "files": {"plugin": "tfserving", "base_path": models},
                },
            }
        )
    )
    yield Served(root, url, grpc_address, process, config, log)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def changed_bundle(model: Path, tmp: Path, text: str) -> Bundle:
    copy = tmp / f"model-{abs(hash(text))}"
    shutil.copytree(model, copy)
    (copy / "README.txt").write_text(text)
    return package(copy, name="digits", output_dir=tmp)


def test_status_and_plan_with_three_targets_import_no_tensorflow(
    served: Served, digits_bundle: Bundle
) -> None:
    cli = CLI(served.root)
    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    assert not result.tensorflow
    targets = {t["target"]: t["result"] for t in json.loads(result.stdout)["targets"]}
    assert targets["grpc"]["state"] == "serving"
    assert targets["grpc"]["version"] == "1"
    assert targets["grpc"]["digest"] == digits_bundle.manifest.digest
    assert targets["rest"]["state"] == "serving"
    assert targets["rest"]["url"] == f"{served.url}/v1/models/digits"
    assert targets["files"]["state"] == "unknown"
    plan = cli("plan")
    assert plan.returncode == 0, plan.stderr
    assert not plan.tensorflow
    assert plan.stdout.count(": noop") == 3


def test_a_deploy_under_prediction_load_loses_no_request(
    served: Served, digits_savedmodel: Path, tmp_path: Path, digits_instances: list[Any]
) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from tfdeploy.plugin import request_json

    stop = threading.Event()
    failures: list[str] = []
    answered: dict[str, int] = {"grpc": 0, "rest": 0}
    versions_seen: set[int] = set()
    images = np.asarray(digits_instances, dtype=np.float32)

    def grpc_load() -> None:
        with grpc.insecure_channel(served.grpc) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(5000):
                if stop.is_set():
                    return
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "digits"
                request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
                try:
                    answer = stub.Predict(request, timeout=30)
                    versions_seen.add(answer.model_spec.version.value)
                    answered["grpc"] += 1
                except grpc.RpcError as exc:
                    failures.append(f"gRPC {exc.code()}: {exc.details()}")

    def rest_load() -> None:
        for _ in range(5000):
            if stop.is_set():
                return
            try:
                request_json(
                    "POST",
                    f"{served.url}/v1/models/digits:predict",
                    {"instances": digits_instances},
                )
                answered["rest"] += 1
            except Exception as exc:
                failures.append(f"REST {exc}")

    threads = [threading.Thread(target=grpc_load), threading.Thread(target=rest_load)]
    for t in threads:
        t.start()
    try:
        while min(answered.values()) < 5:
            time.sleep(0.05)
        result = served.target().deploy(changed_bundle(digits_savedmodel, tmp_path, "release 2"))
        assert result.changed
        before = dict(answered)
        while any(answered[k] < before[k] + 5 for k in answered):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert failures == []
    assert result.status.state == "serving"
    assert result.status.version == "2"
    assert {1, 2} <= versions_seen


class SlowThenInterrupted(Progress):
    """Copies slowly, so the server polls mid-copy several times, then is interrupted like Ctrl-C."""

    def __init__(self) -> None:
        self.calls = 0

    def advance(self, done: int, total: int) -> None:
        self.calls += 1
        time.sleep(0.3)
        if self.calls == 3:
            raise KeyboardInterrupt


def test_an_interrupted_copy_never_becomes_a_visible_version(
    served: Served, digits_savedmodel: Path, tmp_path: Path
) -> None:
    before = served.target().status()
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        for _ in range(2000):
            if stop.is_set():
                return
            seen.update(served.versions_on_server())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    bundle = changed_bundle(digits_savedmodel, tmp_path, "release 3")
    target = served.target()
    target.progress = SlowThenInterrupted()
    try:
        with pytest.raises(KeyboardInterrupt):
            target.deploy(bundle)
        time.sleep(0.6)  # three poll intervals of the server
    finally:
        stop.set()
        watcher.join()
    new_version = int(before.version or 0) + 1
    assert new_version not in seen
    assert not (served.root / "models" / "digits" / str(new_version)).exists()
    assert not list((served.root / "models" / "digits").glob(".tfdeploy-staging-*"))
    after = served.target().status()
    assert (after.version, after.digest, after.state) == (before.version, before.digest, "serving")
    # Running the deploy again completes it.
    rerun = served.target().deploy(bundle)
    assert rerun.changed and rerun.status.version == str(new_version)
    assert rerun.status.state == "serving"


def test_rest_predict_verify_and_rollback_through_the_cli(served: Served) -> None:
    cli = CLI(served.root)
    before = served.target().status()
    verify = cli("verify", "--all", "--json")
    doc = json.loads(verify.stdout)
    outcomes = {t["target"]: t for t in doc["targets"]}
    assert outcomes["grpc"]["result"]["ok"] and outcomes["rest"]["result"]["ok"]
    assert not outcomes["files"]["ok"]  # no server to ask
    assert "no server to predict with" in outcomes["files"]["error"]["message"]
    assert verify.returncode == 1
    back = cli("rollback", "-t", "grpc", "--json")
    assert back.returncode == 0, back.stderr
    status = json.loads(back.stdout)["targets"][0]["result"]
    assert int(status["version"]) == int(before.version or 0) - 1
    assert status["state"] == "serving"
    served_now = served.versions_on_server()
    assert served_now[int(status["version"])] == "AVAILABLE"
    assert served_now.get(int(before.version or 0)) != "AVAILABLE"
    # The replaced version is set aside whole, invisible to the server, and status says so.
    models = served.root / "models" / "digits"
    assert (models / f".tfdeploy-rolledback-{before.version}" / "saved_model.pb").is_file()
    aside = [v for v in status["versions"] if v["version"] == before.version]
    assert aside and "rollback --to" in aside[0]["detail"]
    # So a rollback --to it rolls forward.
    forward = cli("rollback", "-t", "grpc", "--to", str(before.version), "--json")
    assert forward.returncode == 0, forward.stderr
    status = json.loads(forward.stdout)["targets"][0]["result"]
    assert (status["version"], status["digest"]) == (before.version, before.digest)
    assert not list(models.glob(".tfdeploy-rolledback-*"))


def test_a_version_the_server_cannot_load_is_withdrawn_and_the_previous_keeps_serving(
    served: Served, digits_savedmodel: Path, tmp_path: Path
) -> None:
    from tfdeploy.errors import TargetError

    before = served.target().status()
    broken = tmp_path / "broken"
    shutil.copytree(digits_savedmodel, broken)
    for data in (broken / "variables").glob("variables.data-*"):
        data.write_bytes(b"not a checkpoint")
    bundle = package(broken, name="digits", output_dir=tmp_path)
    with pytest.raises(TargetError, match="failed to load version"):
        served.target().deploy(bundle)
    after = served.target().status()
    assert (after.version, after.digest, after.state) == (before.version, before.digest, "serving")
    assert served.versions_on_server()[int(before.version or 0)] == "AVAILABLE"


def test_predict_through_a_deploy_yaml_target_from_python_and_the_cli(
    served: Served, digits_model: Any, digits_instances: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfdeploy import predict_savedmodel

    monkeypatch.chdir(served.root)
    want = np.asarray(digits_model.predict_instances(digits_instances).to_numpy())
    for target in ("grpc", "rest"):
        got = predict_savedmodel(digits_instances, target, batch_size=2)
        assert len(got) == 5
        np.testing.assert_allclose(np.asarray(got.to_numpy()), want, atol=1e-5)
        # The output's name comes from the project's model: printed as a local prediction.
        assert str(got).startswith("Prediction 1:\n  prediction: [")
    cli = CLI(served.root)
    result = cli("predict", "--target", "grpc", "--input", "instances.json", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["predictions"]) == 5
    both = cli("predict", "--target", "grpc", "--model", "savedmodel", "--input", "instances.json")
    assert both.returncode == 2 and "exactly one of --model or --target" in both.stderr
