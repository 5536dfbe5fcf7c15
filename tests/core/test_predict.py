"""predict_savedmodel from a loaded model, a path, a bundle and a URL; Predictions; batching."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfdeploy import load_savedmodel, predict_savedmodel
from tfdeploy.errors import InvalidInputError, RemoteError, SignatureNotFoundError, TfdeployError
from tfdeploy.predict import wire
from tfdeploy.predict.runtime import LoadedModel


def test_predictions_print_like_the_r_package(
    digits_model: LoadedModel, digits_instances: list
) -> None:
    preds = predict_savedmodel(digits_instances[:2], digits_model)
    text = str(preds)
    assert text.startswith("Prediction 1:\n  prediction: [")
    assert "Prediction 2:" in text
    assert len(preds) == 2 and len(preds[0]) == 10
    assert json.loads(preds.to_json())["predictions"] == preds.rows
    arr = preds.to_numpy()
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 10)
    assert np.allclose(arr.sum(axis=1), 1.0, atol=1e-5)


def test_from_a_path_a_pb_file_and_numpy_input(
    digits_savedmodel: Path, digits_model: LoadedModel, digits_instances: list
) -> None:
    expected = predict_savedmodel(digits_instances, digits_model).to_numpy()
    from_pb = predict_savedmodel(np.asarray(digits_instances), digits_savedmodel / "saved_model.pb")
    assert np.allclose(from_pb.to_numpy(), expected)


def test_instances_run_in_batches_not_one_call_each(
    digits_model: LoadedModel, digits_instances: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_run = LoadedModel.run

    def counting_run(
        self: LoadedModel, name: str, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        sizes.append(len(inputs["image"]))
        return real_run(self, name, inputs)

    monkeypatch.setattr(LoadedModel, "run", counting_run)
    instances = digits_instances * 2  # 10
    whole = predict_savedmodel(instances, digits_model, batch_size=4)
    assert sizes == [4, 4, 2]
    assert np.allclose(
        whole.to_numpy(), predict_savedmodel(instances, digits_model, batch_size=100).to_numpy()
    )


def test_columnar_request_and_signature_errors(
    digits_model: LoadedModel, digits_instances: list
) -> None:
    answer = digits_model.predict({"inputs": {"image": digits_instances[:2]}})
    assert len(answer["outputs"]) == 2
    with pytest.raises(SignatureNotFoundError):
        predict_savedmodel(digits_instances, digits_model, signature_name="nope")
    with pytest.raises(InvalidInputError, match="empty"):
        predict_savedmodel([], digits_model)
    with pytest.raises(TfdeployError, match="cannot predict with an int: it takes a model from"):
        predict_savedmodel(digits_instances, 42)


class _Server(ThreadingHTTPServer):
    model: LoadedModel
    seen: list[tuple[str, int]]


class _Handler(BaseHTTPRequestHandler):
    """A minimal TF Serving / R-tfdeploy REST server around a loaded model."""

    server: _Server

    def do_POST(self) -> None:
        body = wire.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, len(body.get("instances", []))))
        if self.path.endswith("/broken:predict"):
            self._send(400, {"error": "Servable not found for request: Latest(broken)"})
            return
        sig = self.path.strip("/").split("/")[0] if "/v1/" not in self.path else None
        self._send(200, self.server.model.predict(body, signature_name=sig))

    def _send(self, status: int, body: Any) -> None:
        raw = wire.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def rest_server(digits_model: LoadedModel) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.model, server.seen = digits_model, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_from_a_tf_serving_url_in_batches(
    rest_server: _Server, digits_model: LoadedModel, digits_instances: list
) -> None:
    url = f"http://127.0.0.1:{rest_server.server_port}/v1/models/digits"
    rest_server.seen.clear()
    preds = predict_savedmodel(digits_instances, url, batch_size=2)
    assert rest_server.seen == [
        ("/v1/models/digits:predict", 2),
        ("/v1/models/digits:predict", 2),
        ("/v1/models/digits:predict", 1),
    ]
    assert np.allclose(
        preds.to_numpy(), predict_savedmodel(digits_instances, digits_model).to_numpy()
    )
    # This server has no /metadata: the output's name is unknown, and nothing fails.
    assert preds.output_names is None and str(preds).startswith("Prediction 1:\n  [")


def test_from_an_r_tfdeploy_url(rest_server: _Server, digits_instances: list) -> None:
    rest_server.seen.clear()
    preds = predict_savedmodel(digits_instances[:1], f"http://127.0.0.1:{rest_server.server_port}")
    assert rest_server.seen == [("/serving_default/predict", 1)]
    assert len(preds[0]) == 10


def test_server_errors_and_unreachable_servers_are_clear(
    rest_server: _Server, digits_instances: list
) -> None:
    with pytest.raises(RemoteError, match="answered 400: Servable not found") as err:
        predict_savedmodel(
            digits_instances, f"http://127.0.0.1:{rest_server.server_port}/v1/models/broken"
        )
    assert err.value.http_status == 400
    with pytest.raises(RemoteError, match="cannot reach") as err2:
        predict_savedmodel(digits_instances, "http://127.0.0.1:9/v1/models/x", timeout=2)
    assert "server is running" in (err2.value.hint or "")


def test_load_savedmodel_reports_a_model_that_tensorflow_cannot_load(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    import shutil

    from tfdeploy.errors import InvalidModelError

    broken = tmp_path / "broken"
    shutil.copytree(digits_savedmodel, broken)
    for f in (broken / "variables").glob("variables.data*"):
        f.write_bytes(b"garbage")
    with pytest.raises(InvalidModelError, match="TensorFlow cannot load"):
        load_savedmodel(broken)


def test_a_misspelt_path_is_a_missing_model_whatever_deploy_yaml_holds(
    digits_instances: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfdeploy.errors import ModelNotFoundError

    (tmp_path / "deploy.yaml").write_text(
        "model: {path: savedmodel, colour: blue}\ntargets:\n  prod: {plugin: example, path: x}\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="savedmodl") as err:
        predict_savedmodel(digits_instances, "savedmodl")
    assert "deploy.yaml" in (err.value.hint or "")
    # A name that is a target is looked up, and then the file's mistake is reported.
    with pytest.raises(TfdeployError, match="model.colour: unknown key"):
        predict_savedmodel(digits_instances, "prod")
