"""TF Serving's gRPC API, called with the stubs of tensorflow-serving-api."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy.predict import _tf
from tfdeploy.predict.runtime import LoadedModel
from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow

tf = _tf.tensorflow()
from tensorflow_serving.apis import (  # noqa: E402  (TensorFlow first, quietly)
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, digits_savedmodel: Path, examples_savedmodel: Path
) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("grpc-models")
    shutil.copytree(digits_savedmodel, root / "digits" / "1")
    shutil.copytree(digits_savedmodel, root / "digits" / "2")
    shutil.copytree(examples_savedmodel, root / "examples" / "3")
    config = root / "models.config"
    config.write_text(
        f"""model_config_list {{
  config {{ name: 'digits' base_path: '{root / "digits"}' model_platform: 'tensorflow'
           model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
           version_labels {{ key: 'stable' value: 1 }} }}
  config {{ name: 'examples' base_path: '{root / "examples"}' }}
}}"""
    )
    handle = serve_savedmodel(
        model_config_file=config, port=0, grpc_port=0, background=True, quiet=True, poll_seconds=0
    )
    assert handle is not None and handle.grpc_address is not None
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    assert server.grpc_address
    with grpc.insecure_channel(server.grpc_address) as ch:
        yield ch


@pytest.fixture(scope="module")
def predictions(channel: grpc.Channel) -> Any:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel: grpc.Channel) -> Any:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def test_predict_matches_the_loaded_model(
    predictions: Any, digits_model: LoadedModel, digits_instances: list[Any]
) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.array(digits_instances, np.float32)))
    response = predictions.Predict(request, timeout=30)
    got = tf.make_ndarray(response.outputs["prediction"])
    expected = digits_model.predict({"instances": digits_instances})["predictions"]
    assert np.allclose(got, expected, atol=1e-6)
    assert response.model_spec.name == "digits"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"


def test_predict_by_version_and_label(predictions: Any) -> None:
    for setter, want in (
        (lambda s: s.version.__setattr__("value", 1), 1),
        (lambda s: setattr(s, "version_label", "stable"), 1),
    ):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "digits"
        setter(request.model_spec)
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64), np.float32)))
        assert predictions.Predict(request, timeout=30).model_spec.version.value == want


def test_predict_errors_carry_grpc_codes(predictions: Any) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64), np.float64)))
    with pytest.raises(grpc.RpcError) as err:
        predictions.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DT_FLOAT" in err.value.details()
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 63), np.float32)))
    with pytest.raises(grpc.RpcError) as err:
        predictions.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as err:
        predictions.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_model_metadata(predictions: Any) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "digits"
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request, timeout=30)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigs)
    image = sigs.signature_def["serving_default"].inputs["image"]
    assert image.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in image.tensor_shape.dim] == [-1, 64]


def test_classify_and_regress(predictions: Any) -> None:
    def examples(request: Any) -> None:
        request.model_spec.name = "examples"
        for x in (0.25, 1.0):
            ex = request.input.example_list.examples.add()
            ex.features.feature["x"].float_list.value.append(x)

    request = classification_pb2.ClassificationRequest()
    examples(request)
    result = predictions.Classify(request, timeout=30).result
    assert [[(c.label, round(c.score, 4)) for c in r.classes] for r in result.classifications] == [
        [("yes", 0.25), ("no", 0.75)],
        [("yes", 1.0), ("no", 0.0)],
    ]
    request = regression_pb2.RegressionRequest()
    examples(request)
    request.model_spec.signature_name = "regress_x"
    result = predictions.Regress(request, timeout=30).result
    assert [round(r.value, 4) for r in result.regressions] == [0.5, 2.0]


def test_get_model_status(models: Any) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits"
    response = models.GetModelStatus(request, timeout=30)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (2, available, 0),
        (1, available, 0),
    ]


def test_reload_config_applies_the_whole_config(
    server: ServerHandle, models: Any, predictions: Any
) -> None:
    base = Path(server.repository.status("digits")[0].servable.model.path).parent  # type: ignore[union-attr]
    config = model_server_config_pb2.ModelServerConfig()
    c = config.model_config_list.config.add()
    c.name, c.base_path, c.model_platform = "digits", str(base), "tensorflow"
    c.model_version_policy.specific.versions.extend([1, 2])
    c.version_labels["stable"] = 2
    c.version_labels["canary"] = 1
    request = model_management_pb2.ReloadConfigRequest(config=config)
    assert models.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    # The examples model left the config, so it is gone; the labels moved.
    status, _ = http("GET", server.url + "/v1/models/examples")
    assert status == 404
    status, body = http("GET", server.url + "/v1/models/digits/labels/canary")
    assert body["model_version_status"][0]["version"] == "1"
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "digits"
    predict.model_spec.version_label = "stable"
    predict.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64), np.float32)))
    assert predictions.Predict(predict, timeout=30).model_spec.version.value == 2
    # A label that points at a version which does not serve is refused.
    c.version_labels["broken"] = 9
    with pytest.raises(grpc.RpcError) as err:
        models.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=config), timeout=60
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "broken" in err.value.details()
    status, body = http("GET", server.url + "/v1/models/digits/labels/broken")
    assert status == 400  # the refused label was not applied: it is unknown, as in TF Serving
    assert body["error"].startswith("Unrecognized servable version label: broken")
    status, body = http("GET", server.url + "/v1/models/digits/labels/stable")
    assert body["model_version_status"][0]["version"] == "2"


def test_a_malformed_tensor_is_invalid_argument_and_the_server_keeps_serving(
    predictions: Any,
) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    tensor = request.inputs["image"]
    tensor.dtype = tf.float32.as_datatype_enum
    tensor.tensor_shape.dim.add(size=1)
    tensor.tensor_shape.dim.add(size=64)
    tensor.tensor_content = b"\x00" * 10  # not 64 floats
    with pytest.raises(grpc.RpcError) as err:
        predictions.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 64), np.float32)))
    response = predictions.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["prediction"]).shape == (2, 10)
