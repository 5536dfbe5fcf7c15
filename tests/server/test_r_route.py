"""The R package's route on a served ``saved_model.pbtxt`` (as the R package shipped its
models), TF Serving's routes beside it, and clients that keep the output names whatever
answers them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tests.server.conftest import http

from tfdeploy import predict_savedmodel
from tfdeploy.predict.runtime import LoadedModel
from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(half_plus_two_pbtxt: Path) -> Iterator[ServerHandle]:
    handle = serve_savedmodel(half_plus_two_pbtxt, port=0, grpc_port=0, background=True, quiet=True)
    assert handle is not None
    yield handle
    handle.stop()


def test_the_r_route_answers_in_the_r_packages_format(served: ServerHandle) -> None:
    url = served.url + "/serving_default/predict/"
    # Every output keyed by name, one object per instance, also for one output.
    assert http("POST", url, {"instances": [[1.0], [3.0]]}) == (
        200,
        {"predictions": [{"y": [2.5]}, {"y": [3.5]}]},
    )
    # Keys the signature does not take are ignored, as the R package's own tests send them.
    body = {"instances": [{"x": [1.0], "images": [0] * 784, "dense_input": [0] * 784}]}
    assert http("POST", url, body) == (200, {"predictions": [{"y": [2.5]}]})
    # A value that fits the declared per-instance shape is reshaped to it, as R did.
    assert http("POST", url, {"instances": [{"x": 1.0}, {"x": [[2.0]]}]}) == (
        200,
        {"predictions": [{"y": [2.5]}, {"y": [3.0]}]},
    )
    assert http("POST", url, {"inputs": {"x": [[1.0]]}}) == (200, {"outputs": {"y": [[2.5]]}})
    status, body = http("POST", served.url + "/regress_x_to_z/predict", {"instances": [[1.0]]})
    assert status == 404 and "Signature 'regress_x_to_z' not available" in body["error"]
    assert "serving_default" in body["error"]


def test_tf_serving_routes_stay_tf_servings(served: ServerHandle) -> None:
    url = served.url + "/v1/models/default:predict"
    assert http("POST", url, {"instances": [1.0, 2.0, 5.0]}) == (
        200,
        {"predictions": [2.5, 3.0, 4.5]},
    )
    status, body = http("POST", url, {"instances": [{"x": [1.0], "images": [0]}]})
    assert status == 400 and "does not have named input: images" in body["error"]


def test_grpc_serves_the_pbtxt_model(served: ServerHandle) -> None:
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    assert served.grpc_address
    with grpc.insecure_channel(served.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "default"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0, 5.0]))
        response = stub.Predict(request, timeout=30)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]


def test_predictions_keep_output_names_whatever_answers(
    served: ServerHandle, half_plus_two_pbtxt: Path
) -> None:
    instances = [[1.0], [3.0]]
    local = LoadedModel(half_plus_two_pbtxt)
    try:
        want = predict_savedmodel(instances, local)
    finally:
        local.close()
    assert str(want) == "Prediction 1:\n  y: [2.5]\n\nPrediction 2:\n  y: [3.5]"
    for url in (served.url + "/v1/models/default", served.url):
        got = predict_savedmodel(instances, url)
        assert got.output_names == ["y"]
        assert str(got) == str(want)
        assert got.to_json() == want.to_json()  # TF Serving's format, whatever answered
        assert np.array_equal(np.asarray(got.to_numpy()), np.asarray(want.to_numpy()))
