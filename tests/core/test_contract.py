"""The prediction contract: request formats, coercion, errors and answer shapes (no TensorFlow)."""

from __future__ import annotations

import base64
import json
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
    ("body", "shape"),
    [
        ({"instances": [[1, 2]]}, (1, 2)),  # the signature says [-1, 3]: the model decides
        ({"instances": [1.0, 2.0, 5.0]}, (3,)),  # TF Serving's half_plus_two example
        ({"inputs": [[1, 2]]}, (1, 2)),
        ({"inputs": 5.0}, ()),
        ({"instances": [[[1.0]], [[2.0]]]}, (2, 1, 1)),
    ],
)
def test_tensors_are_built_from_the_json_as_given_not_refused_by_the_declared_shape(
    body: object, shape: tuple[int, ...]
) -> None:
    req = wire.prepare(body, ONE)
    assert req.inputs["x"].shape == shape and req.inputs["x"].dtype == np.float32


def test_a_refusal_by_the_model_names_the_input_what_it_expects_and_what_it_got() -> None:
    from tfdeploy.errors import PredictionError

    refused = PredictionError("the model failed on this input: In[0] is not a matrix")
    row = wire.explain_refusal(wire.prepare({"instances": [[1, 2]]}, ONE), refused)
    assert isinstance(row, InvalidInputError)
    assert row.message == (
        "instances: input 'x' expects DT_FLOAT values of shape [3] per instance; instances[0] "
        "has shape [2] (the model refused it: In[0] is not a matrix)"
    )
    assert "x (DT_FLOAT [-1, 3])" in (row.hint or "")
    columnar = wire.explain_refusal(wire.prepare({"inputs": [[1, 2]]}, ONE), refused)
    assert "inputs: input 'x' expects DT_FLOAT values of shape [-1, 3]; got shape [1, 2]" in str(
        columnar
    )
    # A failure on inputs of the declared shapes is the model's own error, as it is.
    fits = wire.prepare({"instances": [[1, 2, 3]]}, ONE)
    assert wire.explain_refusal(fits, refused) is refused


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"instances": [[1, 2, 3], [1, 2]]},
            ["'x'", "instances[0] has shape [3] but instances[1] has [2]", "Expecting tensor size"],
        ),
        ({"instances": [[[1, 2]], [[1], [2]]]}, ["'x'", "Expecting shape [1,2] but got: [2,1]"]),
        ({"instances": [["a", "b", "c"]]}, ["'x'", "DT_FLOAT", "not of expected type: float"]),
        ({"instances": [[True, False, True]]}, ["a boolean", "not of expected type: float"]),
        ({"instances": [[None, 1, 2]]}, ["null", "not of expected type: float"]),
        (
            {"instances": [{"z": [1, 2, 3]}]},
            ["unknown input 'z'", "missing input 'x'", "x (DT_FLOAT [-1, 3])"],
        ),
        ({"instances": [{"x": [1, 2, 3], "z": 1}]}, ["does not have named input: z"]),
        ({"instances": []}, ["empty", "No values in 'instances' array"]),
        ({"instances": "abc"}, ["a list", "Excepting 'instances' to be an list/array"]),
        (
            {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]},
            ["not both", "Not formatted correctly"],
        ),
        ({}, ["exactly one of 'instances'", "Missing 'inputs' or 'instances' key"]),
        ({"signature_name": 5, "instances": [[1, 2, 3]]}, ["must be a string value"]),
        ([1, 2], ["JSON object"]),
        ({"instances": [[1e300, 0, 0]]}, ["out of range for DT_FLOAT", "loss of precision"]),
        ({"instances": [16777217]}, ["16777217", "to float without loss of precision"]),
        ({"instances": [[[1], 2, 3]]}, ["'x'", "ragged"]),
        ({"instances": [[1, 2, 3], {"x": [1, 2, 3]}]}, ["Expecting value/list but got object"]),
    ],
)
def test_bad_requests_name_the_input_and_say_it_in_tf_servings_words_too(
    body: object, words: list[str]
) -> None:
    with pytest.raises(InvalidInputError) as err:
        wire.prepare(body, ONE)
    text = err.value.describe()
    for word in words:
        assert word in text


def test_the_double_limit_and_other_dtypes_follow_tf_servings_rules() -> None:
    double = {
        "serving_default": Signature(
            "serving_default", {"x": spec("x", "DT_DOUBLE", (None,))}, {"y": spec("y")}
        )
    }
    with pytest.raises(InvalidInputError, match="to double without loss of precision"):
        wire.prepare({"instances": [9007199254740993]}, double)
    assert wire.prepare({"instances": [9007199254740991]}, double).inputs["x"].dtype == np.float64
    flags = {
        "serving_default": Signature(
            "serving_default", {"f": spec("f", "DT_BOOL", (None,))}, {"y": spec("y")}
        )
    }
    assert wire.prepare({"instances": [True, False]}, flags).inputs["f"].tolist() == [True, False]
    with pytest.raises(InvalidInputError, match="not of expected type: bool"):
        wire.prepare({"instances": [1, 0]}, flags)


def test_several_inputs_need_objects_and_columnar_ignores_keys_the_signature_lacks() -> None:
    with pytest.raises(InvalidInputError) as err:
        wire.prepare({"instances": [[1, "x"]]}, TWO)
    assert "instances is a plain list, but expecting list of objects" in err.value.message
    with pytest.raises(InvalidInputError, match="Expecting object but got list at item 1"):
        wire.prepare({"instances": [{"a": 1, "b": "x"}, [1, "x"]]}, TWO)
    with pytest.raises(InvalidInputError, match="Missing named input: b"):
        wire.prepare({"inputs": {"a": [1]}}, TWO)
    with pytest.raises(InvalidInputError, match="inputs is a plain value/list, but expecting"):
        wire.prepare({"inputs": [1, 2]}, TWO)
    req = wire.prepare({"inputs": {"a": [1, 2], "b": ["p", "q"], "unused": 3}}, TWO)
    assert set(req.inputs) == {"a", "b"}


def test_the_r_route_ignores_keys_the_signature_lacks_and_reshapes_what_fits() -> None:
    body = {"instances": [{"x": [1, 2, 3], "images": [0] * 784, "dense_input": [0] * 784}]}
    with pytest.raises(InvalidInputError):
        wire.prepare(body, ONE)  # TF Serving refuses the extra keys
    assert wire.prepare(body, ONE, dialect="r").inputs["x"].tolist() == [[1, 2, 3]]
    nested = {"instances": [{"x": [[1], [2], [3]]}, {"x": [[4, 5, 6]]}]}
    assert wire.prepare(nested, ONE, dialect="r").inputs["x"].tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(InvalidInputError, match="missing input 'x'"):
        wire.prepare({"instances": [{"images": [0] * 784}]}, ONE, dialect="r")


@pytest.mark.parametrize(
    ("instances", "words"),
    [
        ([{"a": 1.5, "b": "x"}], ["whole numbers", "DT_INT64", "1.5", "type: int64"]),
        ([{"a": float("nan"), "b": "x"}], ["NaN", "not integers"]),
        ([{"a": 2**70, "b": "x"}], ["too large"]),
        ([{"a": True, "b": "x"}], ["boolean"]),
        ([{"a": 1, "b": {"b64": "!!!"}}], ["invalid base64", "Unable to base64 decode"]),
        ([{"a": 1, "b": {"b64": 5}}], ["not formatted correctly for base64 data"]),
        ([{"a": 1, "b": 5}], ["expects strings", "a number", "not of expected type: string"]),
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
    with pytest.raises(SignatureNotFoundError) as err:
        wire.prepare({"signature_name": "nope", "instances": [[1, 2, 3]]}, ONE)
    assert err.value.message == (
        'Serving signature name: "nope" not found in signature def (the model has: serving_default)'
    )


def test_malformed_and_deeply_nested_json_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="malformed JSON"):
        wire.loads(b'{"instances": [1,')
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        wire.loads("[" * 100_000 + "]" * 100_000)


def test_answers_one_output_bare_several_keyed_and_bytes_as_b64() -> None:
    one = wire.answer({"y": np.array([[1.0], [2.0]])}, "row")
    assert one == {"predictions": [[1.0], [2.0]]}
    several = wire.answer(
        {"score": np.array([0.5, 0.25]), "label_bytes": np.array([b"\x01", b"ok"], dtype=object)},
        "row",
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


def test_the_r_format_keys_every_output_also_a_single_one() -> None:
    outputs = {"y": np.array([[1.0], [2.0]], dtype=np.float32)}
    assert wire.answer(outputs, "row", keyed=True) == {"predictions": [{"y": [1.0]}, {"y": [2.0]}]}
    assert wire.answer(outputs, "columnar", keyed=True) == {"outputs": {"y": [[1.0], [2.0]]}}
    assert (
        wire.encode_answer(outputs, "row", keyed=True)
        == b'{"predictions":[{"y":[1.0]},{"y":[2.0]}]}'
    )


def test_float32_outputs_carry_tf_servings_decimals() -> None:
    # TF Serving writes six significant digits when they read back as the same float32, nine
    # otherwise (json_tensor_test's FromJsonSingleFloatTensorSixDigitPrecision).
    values = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], dtype=np.float32)
    want = [[9e06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]
    assert wire.answer({"y": values}, "row") == {"predictions": want}
    assert json.loads(wire.encode_answer({"y": values}, "row")) == {"predictions": want}
    thirds = np.array([0.1, 2.55, 1 / 3], dtype=np.float32)
    assert wire.answer({"y": thirds}, "row") == {"predictions": [0.1, 2.55, 0.333333343]}
    assert json.loads(wire.encode_answer({"y": thirds}, "columnar"))["outputs"] == [
        0.1,
        2.55,
        0.333333343,
    ]


def test_row_answers_need_outputs_that_share_their_first_dimension() -> None:
    # Not the number of instances: TF Serving only asks the outputs to agree.
    assert wire.answer({"y": np.array([1.0, 2.0, 3.0])}, "row") == {"predictions": [1.0, 2.0, 3.0]}
    with pytest.raises(InvalidModelError) as err:
        wire.answer({"y": np.array(3.0)}, "row")
    assert "Tensor name: y has no shape information" in err.value.message
    assert "columnar" in (err.value.hint or "")
    with pytest.raises(InvalidModelError, match="Tensor name: b has inconsistent batch size: 3"):
        wire.answer({"a": np.zeros(2), "b": np.zeros(3)}, "row")


def test_non_finite_outputs_are_emitted_as_bare_tokens() -> None:
    raw = wire.dumps(wire.answer({"y": np.array([math.nan, math.inf])}, "row"))
    assert raw == b'{"predictions":[NaN,Infinity]}'
    raw32 = wire.encode_answer({"y": np.array([math.nan, -math.inf, 0.1], np.float32)}, "row")
    assert raw32 == b'{"predictions":[NaN,-Infinity,0.1]}'


def test_batches_split_and_join_in_order() -> None:
    inputs = {"x": np.arange(10)}
    chunks = list(wire.iter_batches(inputs, 10, 4))
    assert [len(c["x"]) for c in chunks] == [4, 4, 2]
    assert wire.concat_outputs(chunks)["x"].tolist() == list(range(10))


def test_a_model_whose_outputs_do_not_follow_the_batch_runs_whole() -> None:
    calls: list[int] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"total": np.array([inputs["x"].sum()])}

    out = wire.run_in_batches(run, {"x": np.arange(10)}, 10, 4)
    assert calls == [4, 10] and out["total"].tolist() == [45]
