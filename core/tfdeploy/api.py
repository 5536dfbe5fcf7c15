"""``predict_savedmodel``: the R package's verb, predicting from whatever it is given.

It sits above both the prediction layer and the deploy layer because one of the things it
takes is the name of a deploy.yaml target; everything else it hands down to
:mod:`tfdeploy.predict`.
"""

from __future__ import annotations

import os
from typing import Any

from tfdeploy.errors import ModelNotFoundError, TfdeployError
from tfdeploy.model.signatures import DEFAULT_SIGNATURE
from tfdeploy.predict import http, wire
from tfdeploy.predict.predictions import Predictions
from tfdeploy.predict.remote import (
    predict_in_batches,
    predict_url_for,
    url_output_names,
    url_sender,
)


def predict_savedmodel(
    instances: Any,
    model: Any,
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    batch_size: int = wire.DEFAULT_BATCH_SIZE,
    timeout: float = http.DEFAULT_TIMEOUT,
) -> Predictions:
    """Predict ``instances`` with ``model`` and return one prediction per instance.

    ``model`` is a :class:`~tfdeploy.LoadedModel` (load once with
    :func:`~tfdeploy.load_savedmodel` for repeated calls), a SavedModel path (directory,
    ``saved_model.pb``, version base path or ``.tar.gz`` bundle, loaded for this call), an
    ``http(s)://`` URL of a server speaking TF Serving's REST API (``.../v1/models/NAME``) or
    the R tfdeploy one (``http://host:port``, posting to ``/<signature>/predict``), or the
    name of a target in ./deploy.yaml (``predict_savedmodel(x, "prod")``), which answers
    through its own protocol.

    ``instances`` is a list of instances, a numpy array whose first dimension is the batch, or
    a whole request (``{"instances": ...}`` or ``{"inputs": ...}``). Instances are sent in
    batches of ``batch_size``.
    """
    from tfdeploy.predict.runtime import LoadedModel

    if isinstance(model, LoadedModel):
        return model.predict_instances(
            instances, signature_name=signature_name, batch_size=batch_size
        )
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        body = wire.as_request(instances, signature_name)
        endpoint = predict_url_for(model, signature_name)
        send = url_sender(endpoint, timeout=timeout)
        return predict_in_batches(
            send,
            body,
            batch_size=batch_size,
            where=endpoint,
            output_names=url_output_names(endpoint, signature_name, timeout=timeout),
        )
    if isinstance(model, str) and not os.path.exists(model):
        from tfdeploy.deployment import operations, project

        if project.names_target(model):
            return operations.predict_instances(
                instances,
                model,
                signature_name=signature_name,
                batch_size=batch_size,
                timeout=timeout,
            )
        raise ModelNotFoundError(
            f"no such file or directory: {model}",
            hint="give a SavedModel directory, a .tar.gz bundle, an http(s):// URL, or the "
            "name of a target in ./deploy.yaml",
        )
    if isinstance(model, (str, os.PathLike)):
        loaded = LoadedModel(model)
        return loaded.predict_instances(
            instances, signature_name=signature_name, batch_size=batch_size
        )
    kind = type(model).__name__
    raise TfdeployError(
        f"predict_savedmodel cannot predict with {'an' if kind[:1] in 'aeiouAEIOU' else 'a'} "
        f"{kind}: it takes a model from load_savedmodel(), a SavedModel path, an http(s):// URL "
        "or the name of a target in ./deploy.yaml",
        hint="load the model first: model = load_savedmodel('path/to/savedmodel')",
    )
