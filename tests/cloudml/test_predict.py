"""Predictions through Endpoint.predict: the shared contract, and bodies within Vertex AI's limit."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from google.cloud.aiplatform_v1.types import PredictRequest
from google.protobuf import json_format
from tfdeploy_cloudml import bodies
from tfdeploy_cloudml.target import CloudMLTarget

import tfdeploy
from tfdeploy.plugin import Bundle, InvalidInputError, RemoteError, TargetError

from .conftest import cloudml_config, fake_settings
from .fake_vertex import PREDICT_BODY_LIMIT, FakeVertex

_names = itertools.count(1)


@pytest.fixture(scope="module")
def served(fake_vertex: FakeVertex, staging_bucket: Any, digits_bundle: Bundle) -> Iterator[str]:
    """A model name deployed once for this module's tests."""
    name = "predicted"
    target = CloudMLTarget(cloudml_config(fake_vertex), name="cloudml", model_name=name)
    target.deploy(digits_bundle)
    target.close()
    yield name


def test_the_measured_body_is_what_the_sdk_sends() -> None:
    cases: list[list[Any]] = [
        [[1, 2.5, 0.1, 1e20, -3, 1e-7]],
        [{"a": 'é☃"\\', "b": {"b64": "AAA="}, "c": [[1, 2], [3]], "d": None, "e": True}],
        ["x", "y", 7],
        [[[]], {}],
        [[0.123456789] * 64] * 3,
    ]
    for instances in cases:
        request = PredictRequest()
        request.instances.extend(instances)
        sent = json_format.MessageToJson(request._pb, use_integers_for_enums=True)
        assert bodies.body_size(instances) == len(sent.encode())


def test_many_instances_go_in_requests_that_fit_and_answer_in_order(
    vertex: FakeVertex, make_cloudml: Any, served: str, digits_model: Any
) -> None:
    rng = np.random.default_rng(0)
    instances = (rng.random((1200, 64)) * 16).tolist()
    compact = len(json.dumps({"instances": instances}))
    assert compact < PREDICT_BODY_LIMIT < bodies.body_size(instances)  # fits only compact
    start = len(vertex.requests)
    got = make_cloudml(served).predict({"instances": instances})
    sent = [r for r in vertex.requests[start:] if r.step == "predict"]
    expected = [bodies.body_size(chunk) for chunk in bodies.batches(instances)]
    assert [r.body_size for r in sent] == expected
    assert len(sent) >= 2 and all(r.status == 200 for r in sent)
    assert max(r.body_size for r in sent) <= PREDICT_BODY_LIMIT
    want = digits_model.predict({"instances": instances})
    assert set(got) == {"predictions"}
    assert np.asarray(got["predictions"]).shape == (1200, 10)
    assert np.max(np.abs(np.asarray(got["predictions"]) - np.asarray(want["predictions"]))) < 1e-5


def test_one_instance_too_large_for_any_request_is_refused_before_sending(
    vertex: FakeVertex, make_cloudml: Any, served: str
) -> None:
    start = len(vertex.requests)
    huge = [0.123456789] * 100_000
    with pytest.raises(InvalidInputError, match=r"instances\[1\] takes [\d,]+ bytes") as raised:
        make_cloudml(served).predict({"instances": [[0.0] * 64, huge]})
    assert "1,572,864" in raised.value.message
    assert vertex.requests[start:] == []


def test_columnar_inputs_answer_columnar_outputs_like_the_local_model(
    make_cloudml: Any, served: str, digits_model: Any, digits_instances: list[Any]
) -> None:
    request = {"inputs": {"image": digits_instances}}
    got = make_cloudml(served).predict(request)
    want = digits_model.predict(request)
    assert set(got) == set(want) == {"outputs"}
    assert np.max(np.abs(np.asarray(got["outputs"]) - np.asarray(want["outputs"]))) < 1e-5


def test_numpy_instances_are_sent_as_json_numbers(
    make_cloudml: Any, served: str, digits_model: Any, digits_instances: list[Any]
) -> None:
    array = np.asarray(digits_instances, dtype=np.float32)
    got = make_cloudml(served).predict({"instances": array})
    want = digits_model.predict({"instances": digits_instances})
    assert np.max(np.abs(np.asarray(got["predictions"]) - np.asarray(want["predictions"]))) < 1e-5


def test_another_signature_is_refused_with_a_reason(make_cloudml: Any, served: str) -> None:
    with pytest.raises(InvalidInputError, match="serving_default' signature only"):
        make_cloudml(served).predict({"instances": [[0.0] * 64], "signature_name": "other"})


def test_input_the_model_refuses_is_a_clear_error_that_is_not_retried(
    make_cloudml: Any, served: str
) -> None:
    with pytest.raises(RemoteError, match="predicting") as raised:
        make_cloudml(served).predict({"instances": [["not", "numbers"]]})
    assert raised.value.code == "INVALID_ARGUMENT" and not raised.value.retryable


def test_predicting_before_any_deploy_says_to_deploy(vertex: FakeVertex, make_cloudml: Any) -> None:
    with pytest.raises(TargetError, match="no endpoint 'nobody-deployed") as raised:
        make_cloudml(f"nobody-deployed{next(_names)}").predict({"instances": [[0.0] * 64]})
    assert "tfdeploy deploy" in (raised.value.hint or "")


def test_predict_savedmodel_reaches_the_target_through_deploy_yaml(
    vertex: FakeVertex,
    served: str,
    tfdeploy_project: Any,
    monkeypatch: pytest.MonkeyPatch,
    digits_model: Any,
    digits_instances: list[Any],
) -> None:
    tfdeploy_project.model_name = served
    tfdeploy_project.add_target("prod", "cloudml", **fake_settings(vertex))
    monkeypatch.chdir(tfdeploy_project.root)
    predictions = tfdeploy.predict_savedmodel(np.asarray(digits_instances), "prod")
    want = digits_model.predict({"instances": digits_instances})["predictions"]
    assert len(predictions) == len(digits_instances)
    assert np.max(np.abs(predictions.to_numpy() - np.asarray(want))) < 1e-5
