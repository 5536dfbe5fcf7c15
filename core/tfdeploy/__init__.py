"""tfdeploy: take a TensorFlow SavedModel from a notebook to production.

The verbs of the R package, in Python::

    from tfdeploy import export_savedmodel, load_savedmodel, predict_savedmodel

    export_savedmodel(model, "savedmodel")
    model = load_savedmodel("savedmodel")
    predict_savedmodel([[0.0] * 64], model)

``import tfdeploy`` is cheap: TensorFlow is imported only when a model is loaded or written.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tfdeploy._version import __version__

if TYPE_CHECKING:
    from tfdeploy.bundle import Bundle, Manifest, package, unpack_bundle
    from tfdeploy.errors import TfdeployError
    from tfdeploy.export import export_savedmodel
    from tfdeploy.hookspecs import hookimpl
    from tfdeploy.orchestrate import deploy, status
    from tfdeploy.predict import predict_savedmodel
    from tfdeploy.predictions import Predictions
    from tfdeploy.runtime import LoadedModel, load_savedmodel
    from tfdeploy.savedmodel import read_model_info
    from tfdeploy.server import serve_savedmodel
    from tfdeploy.validate import validate

#: Public name -> module that defines it; imported on first use (PEP 562).
_EXPORTS = {
    "Bundle": "tfdeploy.bundle",
    "Manifest": "tfdeploy.bundle",
    "package": "tfdeploy.bundle",
    "unpack_bundle": "tfdeploy.bundle",
    "TfdeployError": "tfdeploy.errors",
    "export_savedmodel": "tfdeploy.export",
    "hookimpl": "tfdeploy.hookspecs",
    "deploy": "tfdeploy.orchestrate",
    "status": "tfdeploy.orchestrate",
    "predict_savedmodel": "tfdeploy.predict",
    "Predictions": "tfdeploy.predictions",
    "LoadedModel": "tfdeploy.runtime",
    "load_savedmodel": "tfdeploy.runtime",
    "read_model_info": "tfdeploy.savedmodel",
    "serve_savedmodel": "tfdeploy.server",
    "validate": "tfdeploy.validate",
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
    "predict_savedmodel",
    "read_model_info",
    "serve_savedmodel",
    "status",
    "unpack_bundle",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfdeploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
