"""The OpenAPI document of a served model, generated from its signatures.

Per signature, ``POST /<signature>/predict`` gets a request schema derived from each input's
dtype (integers, numbers, booleans, strings or ``{"b64": ...}``) and shape (one array level
per dimension past the batch), with a valid example keyed by input name, and the schema and an
example of its answer in the R package's format (every output keyed by name). TF Serving's
routes for the model are documented with their own answer format (bare values for one output).
The docs page at ``/`` reads this document, and schemathesis tests against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfdeploy.model.signatures import JSON_TYPES, Signature, TensorSpec

_ERROR_CODES = {
    "400": "The request does not fit the signature or the model refused it, or it is not "
    "valid JSON (also an unknown version label, as in TF Serving).",
    "404": "No such model, version or signature.",
    "413": "The request body is larger than the server accepts.",
    "503": "The server is busy (its queue is full) or the model is not loaded.",
}
_B64 = {
    "type": "object",
    "required": ["b64"],
    "additionalProperties": False,
    "properties": {"b64": {"type": "string", "format": "byte"}},
    "description": "Binary data, base64-encoded.",
}


def element_schema(spec: TensorSpec) -> dict[str, Any]:
    """The JSON Schema of one element of a tensor."""
    kind = JSON_TYPES.get(spec.dtype)
    if kind == "string":
        return {"oneOf": [{"type": "string"}, _B64]}
    if kind == "integer":
        info = np.iinfo(np.dtype(spec.numpy_dtype))
        # JSON numbers beyond 2**53 lose precision in many clients; the bounds stay exact here.
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if kind == "number":
        bound = float(np.finfo(np.dtype(spec.numpy_dtype)).max)
        return {"type": "number", "minimum": -bound, "maximum": bound}
    if kind == "boolean":
        return {"type": "boolean"}
    return {}


def _nest(schema: dict[str, Any], dims: tuple[int | None, ...]) -> dict[str, Any]:
    for d in reversed(dims):
        wrapped: dict[str, Any] = {"type": "array", "items": schema}
        if d is not None:
            wrapped["minItems"] = wrapped["maxItems"] = d
        else:
            wrapped["minItems"] = 1
        schema = wrapped
    return schema


def instance_value_schema(spec: TensorSpec) -> dict[str, Any]:
    """The schema of one instance's value for ``spec`` (its shape without the batch)."""
    per = spec.instance_shape
    if per is None:
        return {}
    return _nest(element_schema(spec), per)


def example_value(spec: TensorSpec) -> Any:
    """A valid example value for one instance of ``spec``: zeros of its shape."""
    kind = JSON_TYPES.get(spec.dtype)
    element: Any = {"integer": 0, "number": 0.0, "boolean": False, "string": ""}.get(kind or "", 0)
    per = spec.instance_shape or ()
    value = element
    for d in reversed(per):
        value = [value] * (d if d is not None else 1)
    return value


def instance_schema(signature: Signature) -> dict[str, Any]:
    """One row-format instance: a bare value for one input, else an object keyed by input."""
    specs = list(signature.inputs.values())
    keyed = {
        "type": "object",
        "required": [s.key for s in specs],
        "additionalProperties": False,
        "properties": {s.key: instance_value_schema(s) for s in specs},
    }
    if len(specs) == 1:
        return instance_value_schema(specs[0])
    return keyed


def example_instance(signature: Signature) -> Any:
    """A valid example instance for ``signature``, keyed by input name."""
    return {s.key: example_value(s) for s in signature.inputs.values()}


def predict_request_schema(signature: Signature) -> dict[str, Any]:
    """The row-format request body for ``signature``: instances keyed by input name (a bare
    value per instance also works for one input)."""
    items = instance_schema(signature)
    if len(signature.inputs) == 1:
        (spec,) = signature.inputs.values()
        keyed = {
            "type": "object",
            "required": [spec.key],
            "additionalProperties": False,
            "properties": {spec.key: instance_value_schema(spec)},
        }
        items = {"oneOf": [keyed, items]} if items else {}
    return {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "items": items}},
    }


def output_value_schema(spec: TensorSpec) -> dict[str, Any]:
    """One instance's value of an output in an answer: arrays by its shape past the batch."""
    kind = JSON_TYPES.get(spec.dtype)
    if spec.key.endswith("_bytes") and kind == "string":
        element: dict[str, Any] = _B64
    elif kind == "number":
        # Untyped: NaN and ±Infinity travel as bare tokens, which no JSON Schema type admits.
        element = {"description": "a number, or one of the bare tokens NaN, Infinity, -Infinity"}
    elif kind is not None:
        element = {"type": kind}
    else:
        element = {}
    per = spec.instance_shape
    if per is None or not element:
        return {}
    schema = element
    for d in reversed(per):
        wrapped: dict[str, Any] = {"type": "array", "items": schema}
        if d is not None:
            wrapped["minItems"] = wrapped["maxItems"] = d
        schema = wrapped
    return schema


def _example_output(spec: TensorSpec) -> Any:
    if spec.key.endswith("_bytes") and spec.dtype == "DT_STRING":
        return {"b64": "aGVsbG8="}
    return example_value(spec)


def answer_schema(signature: Signature, *, keyed: bool) -> dict[str, Any]:
    """The row-format answer: one entry per instance, every output keyed by name (``keyed``,
    the R package's format) or, as TF Serving answers, a bare value for one output."""
    specs = list(signature.outputs.values())
    if len(specs) == 1 and not keyed:
        item = output_value_schema(specs[0])
    else:
        item = {
            "type": "object",
            "required": [s.key for s in specs],
            "properties": {s.key: output_value_schema(s) for s in specs},
        }
    return {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": item}},
    }


def example_answer(signature: Signature, *, keyed: bool) -> dict[str, Any]:
    """An example answer for one instance, in the format of :func:`answer_schema`."""
    specs = list(signature.outputs.values())
    if len(specs) == 1 and not keyed:
        return {"predictions": [_example_output(specs[0])]}
    return {"predictions": [{s.key: _example_output(s) for s in specs}]}


def _tensor_doc(spec: TensorSpec) -> dict[str, Any]:
    doc = spec.to_dict()
    doc["example"] = example_value(spec)
    if spec.dtype == "DT_STRING":
        doc["b64_example"] = {"b64": "aGVsbG8="}
    return doc


def _errors() -> dict[str, Any]:
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {code: {"description": text, "content": ref} for code, text in _ERROR_CODES.items()}


def _json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: How each route answers, for its description and the docs page.
ANSWER_FORMATS = {
    "r": "Answers in the R package's format: one object per instance, every output keyed by "
    "its name, also when there is only one.",
    "tf_serving": "Answers in TF Serving's format: one entry per instance, a bare value when "
    "the signature has one output, an object keyed by output name when it has several.",
}


def _predict_operation(
    signature: Signature, operation_id: str, summary: str, *, keyed: bool
) -> dict[str, Any]:
    example = {"instances": [example_instance(signature)]}
    inputs = ", ".join(f"{s.key} ({s.dtype} {s.shape_text()})" for s in signature.inputs.values())
    answer_format = ANSWER_FORMATS["r" if keyed else "tf_serving"]
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": (
            f"Inputs: {inputs}. {answer_format} "
            'Strings may be sent as {"b64": "..."}; a signature_name in the body wins over the path.'
        ),
        "x-answer-format": "r" if keyed else "tf_serving",
        "x-signature": {
            "name": signature.name,
            "method_name": signature.method_name,
            "inputs": [_tensor_doc(s) for s in signature.inputs.values()],
            "outputs": [s.to_dict() for s in signature.outputs.values()],
        },
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": predict_request_schema(signature),
                    "example": example,
                }
            },
        },
        "responses": {
            "200": {
                "description": f"One prediction per instance. {answer_format}",
                "content": {
                    "application/json": {
                        "schema": answer_schema(signature, keyed=keyed),
                        "example": example_answer(signature, keyed=keyed),
                    }
                },
            },
            **_errors(),
        },
    }


def build_spec(
    signatures: Mapping[str, Signature], *, model_name: str, version: int
) -> dict[str, Any]:
    """The OpenAPI 3 document for a model's signatures and TF Serving routes."""
    paths: dict[str, Any] = {}
    predictable = {
        n: s for n, s in signatures.items() if all(t.json_representable for t in s.inputs.values())
    }
    for name, sig in predictable.items():
        paths[f"/{name}/predict"] = {
            "post": _predict_operation(
                sig, f"predict_{name}", f"Predict with signature {name}", keyed=True
            )
        }
    status_schema = {
        "type": "object",
        "required": ["model_version_status"],
        "properties": {"model_version_status": {"type": "array"}},
    }
    paths[f"/v1/models/{model_name}"] = {
        "get": {
            "operationId": "model_status",
            "summary": "TF Serving: the model's version status",
            "responses": {"200": _json_answer("Version status.", status_schema), **_errors()},
        }
    }
    paths[f"/v1/models/{model_name}/metadata"] = {
        "get": {
            "operationId": "model_metadata",
            "summary": "TF Serving: the model's signatures",
            "responses": {
                "200": _json_answer(
                    "Signature definitions.",
                    {"type": "object", "required": ["model_spec", "metadata"]},
                ),
                **_errors(),
            },
        }
    }
    default = predictable.get("serving_default") or next(iter(predictable.values()), None)
    if default is not None:
        op = _predict_operation(
            default,
            "tf_serving_predict",
            f"TF Serving: predict with signature {default.name} (row format)",
            keyed=False,
        )
        paths[f"/v1/models/{model_name}:predict"] = {"post": op}
    paths["/healthz"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness and readiness",
            "responses": {
                "200": _json_answer("Ready.", {"type": "object", "required": ["live", "ready"]}),
                "503": _json_answer("Not ready.", {"type": "object"}),
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": model_name,
            "version": str(version),
            "description": f"Predictions from the TensorFlow SavedModel {model_name!r} "
            f"(version {version}), served by tfdeploy.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            }
        },
    }
