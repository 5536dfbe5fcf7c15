"""Model base paths: polling for versions, policies, hot swaps under load, config files."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy.errors import ConfigError
from tfdeploy.predict import _tf
from tfdeploy.server import ServerHandle, serve_savedmodel
from tfdeploy.server.repository import VersionPolicy, parse_config_text

pytestmark = pytest.mark.slow

tf = _tf.tensorflow()
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll until ``condition`` holds; fail (not a timing assertion: a hang guard) after ``limit``."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def versions(server: ServerHandle, name: str = "default") -> dict[str, str]:
    status, body = http("GET", f"{server.url}/v1/models/{name}")
    assert status == 200, body
    return {s["version"]: s["state"] for s in body["model_version_status"]}


def publish(src: Path, base: Path, version: int) -> None:
    """Copy a SavedModel next to the base path, then rename it in: it appears whole."""
    staging = base.parent / f".staging-{version}"
    shutil.copytree(src, staging)
    staging.rename(base / str(version))


@pytest.fixture
def polled(tmp_path: Path, digits_savedmodel: Path) -> Iterator[tuple[ServerHandle, Path]]:
    base = tmp_path / "models" / "digits"
    base.mkdir(parents=True)
    shutil.copytree(digits_savedmodel, base / "1")
    (base / "notes").mkdir()  # not an integer: ignored
    handle = serve_savedmodel(
        model_base_path=base,
        model_name="digits",
        port=0,
        grpc_port=0,
        background=True,
        quiet=True,
        poll_seconds=0.1,
    )
    assert handle is not None
    yield handle, base
    handle.stop()


def test_version_policies_choose_among_folders() -> None:
    assert VersionPolicy().select([1, 3, 2]) == {3}
    assert VersionPolicy("latest", num_versions=2).select([1, 3, 2]) == {2, 3}
    assert VersionPolicy("all").select([1, 3]) == {1, 3}
    assert VersionPolicy("specific", versions=(1, 7)).select([1, 3]) == {1}


def test_config_text_is_parsed_with_tf_servings_schema(tmp_path: Path) -> None:
    configs = parse_config_text(
        """model_config_list { config { name: 'm' base_path: 'rel' model_platform: 'tensorflow'
           model_version_policy { latest { num_versions: 2 } }
           version_labels { key: 'stable' value: 4 } } }""",
        relative_to=tmp_path,
    )
    assert configs[0].name == "m" and configs[0].base_path == tmp_path / "rel"
    assert configs[0].policy == VersionPolicy("latest", num_versions=2)
    assert dict(configs[0].labels) == {"stable": 4}
    with pytest.raises(ConfigError, match="ModelServerConfig"):
        parse_config_text("model_config_list { config { nme: 'x' } }")


def test_new_version_swaps_in_without_a_failed_request(
    polled: tuple[ServerHandle, Path], digits_savedmodel: Path
) -> None:
    server, base = polled
    assert versions(server, "digits") == {"1": "AVAILABLE"}
    assert server.grpc_address
    stop = threading.Event()
    seen: list[int] = []
    failures: list[str] = []

    def load() -> None:
        with grpc.insecure_channel(server.grpc_address or "") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "digits"
            request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64), np.float32)))
            while not stop.is_set():
                try:
                    seen.append(stub.Predict(request, timeout=30).model_spec.version.value)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                status, body = http(
                    "POST", server.url + "/v1/models/digits:predict", {"instances": [[0.0] * 64]}
                )
                if status != 200:
                    failures.append(str(body))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(seen) > 20, "requests to version 1")
        publish(digits_savedmodel, base, 2)
        wait_for(lambda: versions(server, "digits") == {"2": "AVAILABLE", "1": "END"}, "the swap")
        count = len(seen)
        wait_for(lambda: len(seen) > count + 20, "requests to version 2")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2
    assert sorted(set(seen)) == [1, 2]


def test_a_broken_version_leaves_the_old_one_serving(
    polled: tuple[ServerHandle, Path],
) -> None:
    server, base = polled
    staging = base.parent / "broken"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    staging.rename(base / "5")
    wait_for(lambda: "5" in versions(server, "digits"), "version 5 to be tried")
    status, body = http("GET", server.url + "/v1/models/digits/versions/5")
    entry = body["model_version_status"][0]
    assert entry["state"] == "END" and entry["status"]["error_code"] != "OK"
    assert entry["status"]["error_message"]
    assert versions(server, "digits")["1"] == "AVAILABLE"
    status, _ = http("POST", server.url + "/v1/models/digits:predict", {"instances": [[0.0] * 64]})
    assert status == 200


def test_removing_every_version_makes_the_server_not_ready(
    polled: tuple[ServerHandle, Path],
) -> None:
    server, base = polled
    assert http("GET", server.url + "/healthz")[0] == 200
    shutil.rmtree(base / "1")
    wait_for(lambda: versions(server, "digits") == {"1": "END"}, "version 1 to be unloaded")
    status, body = http("GET", server.url + "/healthz")
    assert status == 503 and body["ready"] is False
    assert http("GET", server.url + "/healthz/live")[0] == 200
    status, body = http(
        "POST", server.url + "/v1/models/digits:predict", {"instances": [[0.0] * 64]}
    )
    assert status == 404 and "Latest(digits)" in body["error"]


def test_latest_two_versions_serve_and_follow_new_folders(
    tmp_path: Path, digits_savedmodel: Path
) -> None:
    base = tmp_path / "digits"
    base.mkdir()
    for v in (1, 2, 3):
        shutil.copytree(digits_savedmodel, base / str(v))
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list { config { name: 'digits' base_path: 'digits'"
        " model_version_policy { latest { num_versions: 2 } } } }"
    )
    server = serve_savedmodel(
        model_config_file=config, port=0, background=True, quiet=True, poll_seconds=0.1
    )
    assert server is not None
    try:
        assert versions(server, "digits") == {"3": "AVAILABLE", "2": "AVAILABLE"}
        publish(digits_savedmodel, base, 4)
        wait_for(
            lambda: versions(server, "digits") == {"4": "AVAILABLE", "3": "AVAILABLE", "2": "END"},
            "version 4 in, version 2 out",
        )
    finally:
        server.stop()


def test_an_empty_base_path_serves_the_first_version_that_appears(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    """As TF Serving does: start on an empty base path, then serve what a deploy writes."""
    import json
    import urllib.error
    import urllib.request

    base = tmp_path / "digits"
    base.mkdir()
    handle = serve_savedmodel(
        model_base_path=base, model_name="digits", port=0, background=True, poll_seconds=0.1
    )
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{handle.url}/v1/models/digits/metadata", timeout=5)
        assert err.value.code == 404
        shutil.copytree(digits_savedmodel, tmp_path / "staging")
        (tmp_path / "staging").rename(base / "1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{handle.url}/v1/models/digits", timeout=5) as r:
                    status = json.loads(r.read())
                if status["model_version_status"][0]["state"] == "AVAILABLE":
                    break
            except urllib.error.HTTPError:
                pass
            time.sleep(0.1)
        assert status["model_version_status"][0] == {
            "version": "1",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    finally:
        handle.stop()


def test_a_missing_base_path_is_a_clear_error(tmp_path: Path) -> None:
    from tfdeploy.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no SavedModel version to serve"):
        serve_savedmodel(
            model_base_path=tmp_path / "nope", model_name="digits", port=0, background=True
        )
