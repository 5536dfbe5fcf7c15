"""tfdeploy: take a TensorFlow SavedModel from a notebook to production.

The verbs of the R package, in Python::

    from tfdeploy import export_savedmodel, load_savedmodel, predict_savedmodel

    export_savedmodel(model, "savedmodel")
    model = load_savedmodel("savedmodel")
    predict_savedmodel([[0.0] * 64], model)

``import tfdeploy`` is cheap: TensorFlow is imported only when a model is loaded or written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfdeploy import _lazy
from tfdeploy._version import __version__

if TYPE_CHECKING:
    from tfdeploy.api import predict_savedmodel
    from tfdeploy.deployment.hookspecs import hookimpl
    from tfdeploy.deployment.operations import (
        deploy,
        plan,
        rollback,
        status,
        undeploy,
        verify,
    )
    from tfdeploy.errors import TfdeployError
    from tfdeploy.model.bundle import Bundle, Manifest, package, unpack_bundle
    from tfdeploy.model.savedmodel import read_model_info
    from tfdeploy.predict.export import export_savedmodel
    from tfdeploy.predict.predictions import Predictions
    from tfdeploy.predict.runtime import LoadedModel, load_savedmodel
    from tfdeploy.predict.validate import validate
    from tfdeploy.server import serve_savedmodel

#: Public name -> module that defines it; imported on first use (PEP 562).
_EXPORTS = {
    "predict_savedmodel": "tfdeploy.api",
    "hookimpl": "tfdeploy.deployment.hookspecs",
    **dict.fromkeys(
        ["deploy", "plan", "rollback", "status", "undeploy", "verify"],
        "tfdeploy.deployment.operations",
    ),
    "TfdeployError": "tfdeploy.errors",
    **dict.fromkeys(["Bundle", "Manifest", "package", "unpack_bundle"], "tfdeploy.model.bundle"),
    "read_model_info": "tfdeploy.model.savedmodel",
    "export_savedmodel": "tfdeploy.predict.export",
    "Predictions": "tfdeploy.predict.predictions",
    **dict.fromkeys(["LoadedModel", "load_savedmodel"], "tfdeploy.predict.runtime"),
    "validate": "tfdeploy.predict.validate",
    "serve_savedmodel": "tfdeploy.server",
}

__all__ = [
    "Bundle",
    "LoadedModel",
    "Manifest",
    "Predictions",
    "TfdeployError",
    "__version__",
    "deploy",
    "export_savedmodel",
    "hookimpl",
    "load_savedmodel",
    "package",
    "plan",
    "predict_savedmodel",
    "read_model_info",
    "rollback",
    "serve_savedmodel",
    "status",
    "undeploy",
    "unpack_bundle",
    "validate",
    "verify",
]

__getattr__, __dir__ = _lazy.exports("tfdeploy", _EXPORTS, globals())
