"""The prediction contract: request formats, coercion, errors and answer shapes (no TensorFlow)."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from tfdeploy.errors import InvalidInputError, InvalidModelError, SignatureNotFoundError
from tfdeploy.model.signatures import Signature, TensorSpec
from tfdeploy.predict import wire


def spec(
    key: str, dtype: str = "DT_FLOAT", shape: tuple[int | None, ...] | None = (None, 3)
) -> TensorSpec:
    return TensorSpec(key=key, tensor_name=f"{key}:0", dtype=dtype, shape=shape)


ONE = {"serving_default": Signature("serving_default", {"x": spec("x")}, {"y": spec("y")})}
TWO = {
    "serving_default": Signature(
        "serving_default",
        {"a": spec("a", "DT_INT64", (None,)), "b": spec("b", "DT_STRING", (None,))},
        {"score": spec("score"), "label_bytes": spec("label_bytes", "DT_STRING", (None,))},
    )
}


def test_row_format_bare_instances_become_one_batch() -> None:
    req = wire.prepare({"instances": [[1, 2, 3], [4, 5, 6]]}, ONE)
    assert req.format == "row" and req.batch_size == 2
    assert req.inputs["x"].dtype == np.float32
    assert req.inputs["x"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_row_format_named_instances_with_one_input() -> None:
    req = wire.prepare({"instances": [{"x": [1, 2, 3]}]}, ONE)
    assert req.inputs["x"].shape == (1, 3)


def test_several_inputs_with_b64_and_coercion() -> None:
    blob = base64.b64encode(b"\x00\xffraw").decode()
    req = wire.prepare({"instances": [{"a": 1, "b": {"b64": blob}}, {"a": 2.0, "b": "text"}]}, TWO)
    assert req.inputs["a"].dtype == np.int64 and req.inputs["a"].tolist() == [1, 2]
    assert req.inputs["b"].tolist() == [b"\x00\xffraw", b"text"]


def test_columnar_format_single_value_and_named() -> None:
    bare = wire.prepare({"inputs": [[1, 2, 3]]}, ONE)
    named = wire.prepare({"inputs": {"x": [[1, 2, 3]]}}, ONE)
    assert bare.format == named.format == "columnar"
    assert bare.inputs["x"].tolist() == named.inputs["x"].tolist() == [[1, 2, 3]]


def test_signature_name_in_body_wins_over_the_argument() -> None:
    sigs = {**ONE, "other": Signature("other", {"x": spec("x")}, {"y": spec("y")})}
    req = wire.prepare(
        {"signature_name": "other", "instances": [[1, 2, 3]]},
        sigs,
        signature_name="serving_default",
    )
    assert req.signature.name == "other"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"instances": [[1, 2]]}, ["'x'", "[3]", "DT_FLOAT", "instances[0] has shape [2]"]),
        (
            {"instances": [[1, 2, 3], [1, 2]]},
            ["'x'", "instances[0] has shape [3] but instances[1] has [2]"],
        ),
        ({"instances": [["a", "b", "c"]]}, ["'x'", "DT_FLOAT", "string"]),
        (
            {"instances": [{"z": [1, 2, 3]}]},
            ["unknown input 'z'", "missing input 'x'", "x (DT_FLOAT [-1, 3])"],
        ),
        ({"instances": []}, ["empty"]),
        ({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, ["exactly one", "not both"]),
        ({}, ["exactly one of 'instances'"]),
        ([1, 2], ["JSON object"]),
        ({"instances": [[1e300, 0, 0]]}, ["out of range for DT_FLOAT"]),
        ({"instances": [[[1], 2, 3]]}, ["'x'", "ragged"]),
        ({"inputs": [[1, 2]]}, ["'x'", "[-1, 3]", "got shape [1, 2]"]),
    ],
)
def test_bad_requests_name_the_input_the_expectation_and_what_was_given(
    body: object, words: list[str]
) -> None:
    with pytest.raises(InvalidInputError) as err:
        wire.prepare(body, ONE)
    text = err.value.describe()
    for word in words:
        assert word in text


@pytest.mark.parametrize(
    ("instances", "words"),
    [
        ([{"a": 1.5, "b": "x"}], ["whole numbers", "DT_INT64", "1.5"]),
        ([{"a": float("nan"), "b": "x"}], ["NaN", "not integers"]),
        ([{"a": 2**70, "b": "x"}], ["too large"]),
        ([{"a": True, "b": "x"}], ["boolean"]),
        ([{"a": 1, "b": {"b64": "!!!"}}], ["invalid base64"]),
        ([{"a": 1, "b": 5}], ["expects strings", "a number"]),
        ([[1, "x"]], ["object keyed by input name"]),
    ],
)
def test_dtype_errors(instances: list[object], words: list[str]) -> None:
    with pytest.raises(InvalidInputError) as err:
        wire.prepare({"instances": instances}, TWO)
    for word in words:
        assert word in err.value.describe()


def test_nan_and_infinity_are_accepted_for_float_inputs_as_tf_serving_does() -> None:
    body = wire.loads('{"instances": [[NaN, Infinity, -Infinity]]}')
    req = wire.prepare(body, ONE)
    values = req.inputs["x"][0]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


def test_unknown_signature_lists_the_ones_there_are() -> None:
    with pytest.raises(SignatureNotFoundError, match="'nope' not found .*serving_default"):
        wire.prepare({"signature_name": "nope", "instances": [[1, 2, 3]]}, ONE)


def test_malformed_and_deeply_nested_json_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="malformed JSON"):
        wire.loads(b'{"instances": [1,')
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        wire.loads("[" * 100_000 + "]" * 100_000)


def test_answers_one_output_bare_several_keyed_and_bytes_as_b64() -> None:
    one = wire.answer({"y": np.array([[1.0], [2.0]])}, "row", 2)
    assert one == {"predictions": [[1.0], [2.0]]}
    several = wire.answer(
        {"score": np.array([0.5, 0.25]), "label_bytes": np.array([b"\x01", b"ok"], dtype=object)},
        "row",
        2,
    )
    assert several == {
        "predictions": [
            {"score": 0.5, "label_bytes": {"b64": "AQ=="}},
            {"score": 0.25, "label_bytes": {"b64": "b2s="}},
        ]
    }
    columnar = wire.answer(
        {"score": np.array([0.5]), "label": np.array([b"cat"], dtype=object)}, "columnar"
    )
    assert columnar == {"outputs": {"score": [0.5], "label": ["cat"]}}


def test_row_answer_refuses_outputs_without_the_batch_dimension() -> None:
    with pytest.raises(InvalidModelError) as err:
        wire.answer({"y": np.array(3.0)}, "row", 1)
    assert "first dimension" in err.value.message and "columnar" in (err.value.hint or "")


def test_non_finite_outputs_are_emitted_as_bare_tokens() -> None:
    raw = wire.dumps(wire.answer({"y": np.array([math.nan, math.inf])}, "row", 2))
    assert raw == b'{"predictions":[NaN,Infinity]}'


def test_batches_split_and_join_in_order() -> None:
    inputs = {"x": np.arange(10)}
    chunks = list(wire.iter_batches(inputs, 10, 4))
    assert [len(c["x"]) for c in chunks] == [4, 4, 2]
    assert wire.concat_outputs(chunks)["x"].tolist() == list(range(10))
