"""``tfdeploy serve``: one local server for R tfdeploy, TF Serving REST and TF Serving gRPC.

:func:`serve_savedmodel` starts it; :func:`create_app` gives the REST API as an ASGI app.
Nothing here imports TensorFlow until a model is loaded.
"""

from __future__ import annotations

from tfdeploy.server.runner import ServerHandle, create_app, serve_savedmodel

__all__ = ["ServerHandle", "create_app", "serve_savedmodel"]
