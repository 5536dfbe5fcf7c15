"""Predicting through something that speaks the contract: a server URL, or any ``send``.

:func:`predict_in_batches` is the one loop that splits instances into requests of
``batch_size`` and joins the answers; with :func:`url_sender` it talks to a TF Serving or
R-tfdeploy REST server, and deploy targets run it against their own protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tfdeploy.errors import TfdeployError, from_http_status
from tfdeploy.predict import http, wire
from tfdeploy.predict.predictions import Predictions

#: Sends one contract request and returns its contract answer.
Send = Callable[[dict[str, Any]], Mapping[str, Any]]
#: Finds the signature's output names when an answer does not carry them (``None``: unknown).
OutputNames = Callable[[], Sequence[str] | None]


def predict_in_batches(
    send: Send,
    body: Mapping[str, Any],
    *,
    batch_size: int,
    where: str,
    output_names: OutputNames | None = None,
) -> Predictions:
    """Send a request in chunks of ``batch_size`` instances and join the predictions.

    A columnar request (``inputs``) is sent whole. ``where`` names the server in errors.
    ``output_names`` is asked for the signature's output names when the answer has a bare
    value per instance (TF Serving's answer for one output), so that the predictions print
    with the output's name whatever answered them.
    """
    if "inputs" in body:
        answer = send(dict(body))
        return Predictions.from_answer({"predictions": answer.get("outputs", [])})
    instances = body["instances"]
    wire.check_not_empty(instances)
    rows: list[Any] = []
    for start in range(0, len(instances), batch_size):
        answer = send(dict(body, instances=instances[start : start + batch_size]))
        if "predictions" not in answer:
            raise from_http_status(502, f"{where} answered without 'predictions'")
        rows.extend(answer["predictions"])
    predictions = Predictions.from_answer({"predictions": rows})
    if predictions.output_names is None and output_names is not None:
        names = output_names()
        if names:
            return Predictions.from_answer({"predictions": rows}, list(names))
    return predictions


def predict_url_for(url: str, signature_name: str) -> str:
    """The predict endpoint for a server ``url``.

    TF Serving URLs (``.../v1/models/NAME[/versions/N|/labels/L]``) get ``:predict``; others
    are treated as R-tfdeploy/Connect servers and get ``/<signature>/predict``. A URL that
    already names its predict endpoint is kept.
    """
    base = url.rstrip("/")
    if "/v1/models/" in base:
        return base if base.endswith(":predict") else base + ":predict"
    if base.endswith("/predict"):
        return base
    return f"{base}/{signature_name}/predict"


def url_sender(endpoint: str, *, timeout: float = http.DEFAULT_TIMEOUT) -> Send:
    """A :data:`Send` that POSTs contract requests to a REST server's predict ``endpoint``."""

    def send(chunk: dict[str, Any]) -> Mapping[str, Any]:
        answer = http.request_json("POST", endpoint, chunk, timeout=timeout)
        if not isinstance(answer, Mapping):
            raise from_http_status(502, f"{endpoint} answered {wire.json_kind(answer)}")
        return answer

    return send


def url_output_names(
    url: str, signature_name: str, *, timeout: float = http.DEFAULT_TIMEOUT
) -> OutputNames:
    """How to learn a server's output names for ``signature_name``, failing soft (``None``).

    A TF Serving URL answers them in ``/metadata``; an R-tfdeploy or tfdeploy server in its
    API description (``/openapi.json``, ``/swagger.json``), when that lists outputs.
    """

    def find() -> Sequence[str] | None:
        quick = min(timeout, 10.0)
        base = url.rstrip("/").removesuffix(":predict")
        try:
            if "/v1/models/" in base:
                meta = http.request_json("GET", base + "/metadata", timeout=quick)
                sigs = meta["metadata"]["signature_def"]["signature_def"]
                return sorted(sigs[signature_name or "serving_default"]["outputs"])
        except (TfdeployError, KeyError, TypeError):
            return None
        root = base.removesuffix("/predict")
        root = root.rsplit("/", 1)[0] if root != base else root
        for document in ("/openapi.json", "/swagger.json"):
            try:
                spec = http.request_json("GET", root + document, timeout=quick)
                paths = spec["paths"]
            except (TfdeployError, KeyError, TypeError):
                continue
            for path in (f"/{signature_name}/predict", f"/{signature_name}/predict/"):
                try:
                    outputs = paths[path]["post"]["x-signature"]["outputs"]
                    return [str(o["name"]) for o in outputs]
                except (KeyError, TypeError):
                    continue
        return None

    return find
