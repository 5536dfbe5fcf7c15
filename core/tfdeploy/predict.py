"""``predict_savedmodel``: predict from a loaded model, a SavedModel path or a server URL."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from tfdeploy import contract
from tfdeploy.errors import RemoteError, TfdeployError
from tfdeploy.predictions import Predictions
from tfdeploy.signatures import DEFAULT_SIGNATURE


def predict_savedmodel(
    instances: Any,
    model: Any,
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    batch_size: int = contract.DEFAULT_BATCH_SIZE,
    timeout: float = 60.0,
) -> Predictions:
    """Predict ``instances`` with ``model`` and return one prediction per instance.

    ``model`` is a :class:`~tfdeploy.runtime.LoadedModel` (load once with
    :func:`~tfdeploy.load_savedmodel` for repeated calls), a SavedModel path (directory,
    ``saved_model.pb``, version base path or ``.tar.gz`` bundle, loaded for this call), or an
    ``http(s)://`` URL of a server speaking TF Serving's REST API (``.../v1/models/NAME``) or
    the R tfdeploy one (``http://host:port``, posting to ``/<signature>/predict``), or the
    name of a target in ./deploy.yaml (``predict_savedmodel(x, "prod")``), which answers
    through its own protocol.

    ``instances`` is a list of instances, a numpy array whose first dimension is the batch, or
    a whole request (``{"instances": ...}`` or ``{"inputs": ...}``). Instances are sent in
    batches of ``batch_size``.
    """
    from tfdeploy.runtime import LoadedModel

    if isinstance(model, LoadedModel):
        return model.predict_instances(
            instances, signature_name=signature_name, batch_size=batch_size
        )
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        return predict_url(
            instances, model, signature_name=signature_name, batch_size=batch_size, timeout=timeout
        )
    if isinstance(model, str) and not os.path.exists(model):
        from tfdeploy import orchestrate

        if orchestrate.is_target(model):
            return orchestrate.predict_instances(
                instances,
                model,
                signature_name=signature_name,
                batch_size=batch_size,
                timeout=timeout,
            )
    if isinstance(model, (str, os.PathLike)):
        loaded = LoadedModel(model)
        return loaded.predict_instances(
            instances, signature_name=signature_name, batch_size=batch_size
        )
    raise TfdeployError(
        f"cannot predict with a {type(model).__name__}",
        hint="pass a model from load_savedmodel(), a SavedModel path, an http(s):// URL "
        "or a deploy.yaml target name",
    )


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


def predict_url(
    instances: Any,
    url: str,
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    batch_size: int = contract.DEFAULT_BATCH_SIZE,
    timeout: float = 60.0,
) -> Predictions:
    """Predict through a REST server, one request per batch of ``batch_size`` instances."""
    body = contract.as_request(instances, signature_name)
    endpoint = predict_url_for(url, signature_name)
    if "inputs" in body:
        answer = post_json(endpoint, body, timeout=timeout)
        return Predictions.from_answer({"predictions": answer.get("outputs", [])})
    all_instances = body["instances"]
    contract.check_not_empty(all_instances)
    rows: list[Any] = []
    for start in range(0, len(all_instances), batch_size):
        chunk = dict(body, instances=all_instances[start : start + batch_size])
        answer = post_json(endpoint, chunk, timeout=timeout)
        if "predictions" not in answer:
            raise RemoteError(f"{endpoint} answered without 'predictions'", status=502)
        rows.extend(answer["predictions"])
    return Predictions.from_answer({"predictions": rows})


def post_json(
    url: str, body: Any, *, timeout: float = 60.0, headers: dict[str, str] | None = None
) -> Any:
    """POST ``body`` as JSON and return the decoded answer; errors become :class:`RemoteError`."""
    request = urllib.request.Request(
        url,
        data=contract.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return contract.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc.read())
        raise RemoteError(f"{url} answered {exc.code}: {detail}", status=exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(
            f"cannot reach {url}: {reason}",
            status=503,
            hint="check that the server is running and the URL is right",
        ) from exc


def _error_detail(raw: bytes) -> str:
    try:
        body = contract.loads(raw)
    except TfdeployError:
        return raw.decode("utf-8", errors="replace").strip()[:500] or "no details"
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:500]
