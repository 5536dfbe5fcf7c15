"""Classify/regress ``examples`` become the tf.Example protos TF Serving makes of them
(json_tensor_test's RequestWithContextAndSignature), encoded without TensorFlow."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tfdeploy.errors import InvalidInputError
from tfdeploy.predict import tfexample


def parsed(blob: bytes) -> dict[str, Any]:
    from tfdeploy.predict import _tf

    _tf.tensorflow()
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(blob)
    out: dict[str, Any] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = (kind, list(getattr(feature, kind).value)) if kind else (None, [])
    return out


def test_examples_with_a_context_as_tf_serving_builds_them() -> None:
    body = {
        "signature_name": "custom_signture",
        "context": {"query": "pizza", "location": ["sfo"]},
        "examples": [
            {"names": ["foo", "bar"], "ratings": [8.0, 9.0, math.nan, math.inf], "age": 20},
            {"names": ["baz", {"b64": "aGVsbG8="}], "ratings": 6.0, "intboolmix": [1, True, False]},
            {"names": "bar", "ratings": -math.inf, "empty": []},
        ],
    }
    first, second, third = (parsed(b) for b in tfexample.examples_to_protos(body))
    context = {"query": ("bytes_list", [b"pizza"]), "location": ("bytes_list", [b"sfo"])}
    assert first == {
        **context,
        "names": ("bytes_list", [b"foo", b"bar"]),
        "ratings": ("float_list", first["ratings"][1]),
        "age": ("int64_list", [20]),
    }
    assert first["ratings"][1][:2] == [8.0, 9.0] and math.isnan(first["ratings"][1][2])
    assert second == {
        **context,
        "names": ("bytes_list", [b"baz", b"hello"]),
        "ratings": ("float_list", [6.0]),
        "intboolmix": ("int64_list", [1, 1, 0]),
    }
    assert third == {
        **context,
        "names": ("bytes_list", [b"bar"]),
        "ratings": ("float_list", [-math.inf]),
        "empty": (None, []),
    }
    # An example's own feature wins over the context's.
    (own,) = tfexample.examples_to_protos({"context": {"x": 1.0}, "examples": [{"x": 2.0}]})
    assert parsed(own) == {"x": ("float_list", [2.0])}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"signature_name": ["hello"], "examples": [{"names": ["foo"]}]},
            "'signature_name' key must be a string",
        ),
        ({"context": [{"names": ["foo", "bar"]}]}, "Example must be JSON object"),
        ({"examples": {"names": ["foo", "bar"]}}, "list/array"),
        ({"examples": [[{"names": ["foo", "bar"]}]]}, "Example must be JSON object"),
        (
            {"examples": [{"names": [10, None]}]},
            "names has element with unexpected JSON type: Null",
        ),
        ({"examples": [{"names": [10, 10.0]}]}, "feature: names expecting type: int64"),
        (
            {"examples": [{"names": [10, {"test": 10}]}]},
            "names has element with unexpected JSON type: Object",
        ),
        (
            {"examples": [{"names": [[10], 20]}]},
            "names has element with unexpected JSON type: Array",
        ),
        ({"examples": [{"names": [20, 18446744073709551603]}]}, "Only int64 is supported"),
        ({"examples": [{"names": 1.7976931348623157e308}]}, "loss of precision"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({}, "key 'examples' is expected and was not found"),
    ],
)
def test_json_errors_as_tf_serving_words_them(body: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        tfexample.examples_to_protos(body)
    assert words in err.value.message


def test_results_carry_tf_servings_decimals_and_tokens() -> None:
    from tfdeploy.predict import wire

    classified = tfexample.classify_json(
        [
            [("car", 0.2), ("bike", 0.7), ("bus", 0.1)],
            [("car", 0.7), ("bike", 0.1), ("bus", 0.2)],
        ]
    )
    assert classified == {
        "results": [
            [["car", 0.2], ["bike", 0.7], ["bus", 0.1]],
            [["car", 0.7], ["bike", 0.1], ["bus", 0.2]],
        ]
    }
    assert tfexample.regress_json([0.2, 0.9, 1.0]) == {"results": [0.2, 0.9, 1.0]}
    odd = tfexample.regress_json([0.2, math.inf, 1.0, -math.inf, math.nan])
    assert wire.dumps(odd) == b'{"results":[0.2,Infinity,1.0,-Infinity,NaN]}'
    with pytest.raises(InvalidInputError, match="empty ClassificationResults"):
        tfexample.classify_json([])
    with pytest.raises(InvalidInputError, match="empty RegressionResults"):
        tfexample.regress_json([])
