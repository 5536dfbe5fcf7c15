"""TF Serving's gRPC API field by field, read through tensorflow-serving-api's stubs as TF
Serving's clients read it: typed value fields, model specs, output filters, classify, regress,
MultiInference, metadata and status, and TF Serving's error codes and words."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tfdeploy.predict import _tf
from tfdeploy.server import ServerHandle, serve_savedmodel

pytestmark = pytest.mark.slow

tf = _tf.tensorflow()
from tensorflow_serving.apis import (  # noqa: E402  (TensorFlow first, quietly)
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

MODEL = "half_plus_two"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    half_plus_two_base: Path,
    strings_savedmodel: Path,
    digits_savedmodel: Path,
) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("grpc-compat")
    shutil.copytree(strings_savedmodel, root / "strings" / "1")
    shutil.copytree(digits_savedmodel, root / "digits" / "4")
    config = root / "models.config"
    config.write_text(
        f"""model_config_list {{
  config {{ name: '{MODEL}' base_path: '{half_plus_two_base}'
           version_labels {{ key: 'stable' value: 123 }} }}
  config {{ name: 'strings' base_path: '{root / "strings"}' }}
  config {{ name: 'digits' base_path: '{root / "digits"}' }}
}}"""
    )
    handle = serve_savedmodel(
        model_config_file=config, port=0, grpc_port=0, background=True, quiet=True, poll_seconds=0
    )
    assert handle is not None and handle.grpc_address
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def stubs(server: ServerHandle) -> Iterator[tuple[Any, Any]]:
    assert server.grpc_address
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


def predict_request(values: Any, shape: list[int], **spec: Any) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", MODEL)
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    tensor = request.inputs["x"]
    tensor.dtype = tf.float32.as_datatype_enum
    for d in shape:
        tensor.tensor_shape.dim.add(size=d)
    tensor.float_val.extend(values)
    return request


def fails(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30)
    return err.value


def test_predict_feeds_the_shapes_given_and_answers_in_typed_fields(stubs: tuple[Any, Any]) -> None:
    predictions, _ = stubs
    # x is declared [-1, 1]; TF Serving feeds [3] and [1] as they are.
    for values, shape in (([1.0, 2.0, 5.0], [3]), ([1.0], [1]), ([1.0, 2.0], [2, 1])):
        response = predictions.Predict(predict_request(values, shape), timeout=30)
        y = response.outputs["y"]
        assert list(y.float_val) == [0.5 * v + 2.0 for v in values]
        assert y.tensor_content == b"" and y.dtype == tf.float32.as_datatype_enum
        assert [d.size for d in y.tensor_shape.dim] == shape
        assert response.model_spec.name == MODEL
        assert response.model_spec.version.value == 123
        assert response.model_spec.signature_name == "serving_default"
    by_label = predictions.Predict(predict_request([4.0], [1], version_label="stable"), timeout=30)
    assert by_label.model_spec.version.value == 123 and list(by_label.outputs["y"].float_val) == [
        4.0
    ]


def test_predict_answers_strings_and_ints_in_their_fields(stubs: tuple[Any, Any]) -> None:
    predictions, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "strings"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([b"hello", b"\x00\xff"]))
    response = predictions.Predict(request, timeout=30)
    assert list(response.outputs["length"].int_val) == [5, 2]
    assert list(response.outputs["echo_bytes"].string_val) == [b"hello", b"\x00\xff"]
    request.output_filter.append("length")
    filtered = predictions.Predict(request, timeout=30)
    assert list(filtered.outputs) == ["length"]


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (
            lambda r: r.output_filter.append("z"),
            "INVALID_ARGUMENT",
            "output tensor alias not found in signature: z Outputs expected to be in the set {y}.",
        ),
        (
            lambda r: r.output_filter.extend(["y", "y"]),
            "INVALID_ARGUMENT",
            "duplicate output tensor alias: y",
        ),
        (
            lambda r: r.inputs["z"].CopyFrom(r.inputs["x"]),
            "INVALID_ARGUMENT",
            "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
            "Sent extra: {z}. Missing but required: {}.",
        ),
        (
            lambda r: (r.inputs["z"].CopyFrom(r.inputs["x"]), r.inputs.pop("x")),
            "INVALID_ARGUMENT",
            "input tensor alias not found in signature: z. Inputs expected to be in the set {x}.",
        ),
        (
            lambda r: setattr(r.model_spec, "signature_name", "nope"),
            "FAILED_PRECONDITION",
            'Serving signature key "nope" not found.',
        ),
        (
            lambda r: setattr(r.model_spec, "name", ""),
            "INVALID_ARGUMENT",
            "ModelSpec has no name specified.",
        ),
        (
            lambda r: setattr(r.model_spec, "name", "nope"),
            "NOT_FOUND",
            "Servable not found for request: Latest(nope)",
        ),
        (
            lambda r: setattr(r.model_spec, "version_label", "nope"),
            "INVALID_ARGUMENT",
            "Unrecognized servable version label: nope",
        ),
        (
            lambda r: r.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float64)),
            "INVALID_ARGUMENT",
            "expects DT_FLOAT; got DT_DOUBLE",
        ),
    ],
)
def test_predict_errors_carry_tf_servings_codes_and_words(
    stubs: tuple[Any, Any], change: Any, code: str, words: str
) -> None:
    predictions, _ = stubs
    request = predict_request([1.0], [1])
    change(request)
    err = fails(predictions.Predict, request)
    assert err.code() == getattr(grpc.StatusCode, code)
    assert words in err.details()


def test_a_shape_the_model_refuses_is_explained(stubs: tuple[Any, Any]) -> None:
    predictions, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros(3, np.float32)))
    err = fails(predictions.Predict, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'image' expects DT_FLOAT of shape [-1, 64]; got shape [3]" in err.details()
    assert "the model refused it" in err.details()


def examples(request: Any, *values: float, key: str = "x") -> Any:
    for v in values:
        example = request.input.example_list.examples.add()
        example.features.feature[key].float_list.value.append(v)
    return request


def test_classify_and_regress_as_tf_serving(stubs: tuple[Any, Any]) -> None:
    predictions, _ = stubs
    request = examples(regression_pb2.RegressionRequest(), 80.0, 2.0)
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "regress_x_to_y"
    response = predictions.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [42.0, 3.0]
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 123)
    assert response.model_spec.signature_name == "regress_x_to_y"
    request = examples(classification_pb2.ClassificationRequest(), 20.0)
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classify_x_to_y"
    result = predictions.Classify(request, timeout=30).result
    ((only,),) = [list(c.classes) for c in result.classifications]
    assert (only.label, only.score) == ("", 12.0)
    # A predict signature cannot classify; an unknown one is named.
    request.model_spec.signature_name = ""
    err = fails(predictions.Classify, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict" in err.details()
    )
    request.model_spec.signature_name = "nope"
    assert (
        "No signature was found with the name: nope"
        in fails(predictions.Classify, request).details()
    )
    empty = regression_pb2.RegressionRequest()
    empty.model_spec.name = MODEL
    empty.model_spec.signature_name = "regress_x_to_y"
    err = fails(predictions.Regress, empty)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "Input is empty." in err.details()


def task(request: Any, signature: str, method: str, name: str = MODEL) -> None:
    t = request.tasks.add()
    t.model_spec.name = name
    t.model_spec.signature_name = signature
    t.method_name = f"tensorflow/serving/{method}"


def test_multi_inference_runs_classify_and_regress_tasks(stubs: tuple[Any, Any]) -> None:
    predictions, _ = stubs
    request = examples(inference_pb2.MultiInferenceRequest(), 2.0)
    task(request, "regress_x_to_y", "regress")
    task(request, "regress_x_to_y2", "regress")
    task(request, "classify_x_to_y", "classify")
    response = predictions.MultiInference(request, timeout=30)
    first, second, third = response.results
    assert [r.value for r in first.regression_result.regressions] == [3.0]
    assert [r.value for r in second.regression_result.regressions] == [4.0]
    classes = third.classification_result.classifications[0].classes
    assert [(c.label, c.score) for c in classes] == [("", 3.0)]
    assert [r.model_spec.signature_name for r in response.results] == [
        "regress_x_to_y",
        "regress_x_to_y2",
        "classify_x_to_y",
    ]
    assert {(r.model_spec.name, r.model_spec.version.value) for r in response.results} == {
        (MODEL, 123)
    }


@pytest.mark.parametrize(
    ("tasks", "with_input", "code", "words"),
    [
        ([("regress_x_to_y", "regress", MODEL)], False, "INVALID_ARGUMENT", "Input is empty"),
        ([("nope", "regress", MODEL)], True, "INVALID_ARGUMENT", "signature not found"),
        (
            [("regress_x_to_y", "regress", MODEL), ("regress_x_to_y", "regress", "other")],
            True,
            "INVALID_ARGUMENT",
            "must access the same model name",
        ),
        (
            [("regress_x_to_y", "regress", MODEL)] * 2,
            True,
            "INVALID_ARGUMENT",
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        ([("serving_default", "predict", MODEL)], True, "UNIMPLEMENTED", "Unsupported signature"),
        (
            [("regress_x_to_y", "regress", MODEL), ("regress_x2_to_y3", "regress", MODEL)],
            True,
            "INVALID_ARGUMENT",
            "Input tensor must be the same",
        ),
    ],
)
def test_multi_inference_errors_as_tf_serving(
    stubs: tuple[Any, Any],
    tasks: list[tuple[str, str, str]],
    with_input: bool,
    code: str,
    words: str,
) -> None:
    predictions, _ = stubs
    request = inference_pb2.MultiInferenceRequest()
    if with_input:
        examples(request, 2.0)
    for signature, method, name in tasks:
        task(request, signature, method, name)
    err = fails(predictions.MultiInference, request)
    assert err.code() == getattr(grpc.StatusCode, code)
    assert words in err.details()


def test_model_status_and_metadata_requests_as_tf_serving(stubs: tuple[Any, Any]) -> None:
    predictions, models = stubs
    err = fails(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "Missing ModelSpec" in err.details()
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    request.model_spec.version_label = "stable"
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert (status.version, status.status.error_code) == (123, 0)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    err = fails(predictions.GetModelMetadata, metadata)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "Missing ModelSpec" in err.details()
    metadata.model_spec.name = "digits"
    err = fails(predictions.GetModelMetadata, metadata)
    assert "must specify at least one metadata_field" in err.details()
    metadata.metadata_field.append("fancy")
    assert (
        "Metadata field fancy is not supported"
        in fails(predictions.GetModelMetadata, metadata).details()
    )
    del metadata.metadata_field[:]
    metadata.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(metadata, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("digits", 4)
    assert response.model_spec.signature_name == ""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert sorted(signatures.signature_def) == ["__saved_model_init_op", "serving_default"]


def test_predict_a_scalar_and_through_regress_and_classify_signatures(
    stubs: tuple[Any, Any],
) -> None:
    predictions, _ = stubs
    # predict_impl_test's PredictionSuccess: a scalar x (no shape at all) answers a scalar y.
    request = predict_request([2.0], [])
    response = predictions.Predict(request, timeout=30)
    y = response.outputs["y"]
    assert list(y.float_val) == [3.0] and len(y.tensor_shape.dim) == 0
    # Predict runs regress and classify signatures too, fed their float input directly.
    for signature, output in (("regress_x2_to_y3", "outputs"), ("classify_x2_to_y3", "scores")):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = signature
        request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(2.0))
        response = predictions.Predict(request, timeout=30)
        assert list(response.outputs[output].float_val) == [4.0]
        assert response.model_spec.signature_name == signature
    empty = predict_pb2.PredictRequest()
    assert fails(predictions.Predict, empty).code() == grpc.StatusCode.INVALID_ARGUMENT
    empty.model_spec.name = MODEL
    err = fails(predictions.Predict, empty)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input size does not match signature: 0!=1" in err.details()
