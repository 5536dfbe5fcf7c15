"""tfdeploy target ``connect``: publish a SavedModel to Posit Connect through rsconnect-python.

``mode: app`` (default) publishes a FastAPI bundle running tfdeploy's own server app over the
model; ``mode: tensorflow`` publishes Connect's native TensorFlow content. See docs/connect.md.
rsconnect-python is imported only when a target talks to Connect, so loading the plugin costs
nothing.
"""

from __future__ import annotations

from tfdeploy.plugin import RegisterTarget, hookimpl
from tfdeploy_connect.config import ConnectConfig
from tfdeploy_connect.target import ConnectTarget

__all__ = ["ConnectConfig", "ConnectTarget", "register_targets"]


@hookimpl
def register_targets(register: RegisterTarget) -> None:
    """Register ``connect`` (alias ``posit-connect``)."""
    register("connect", ConnectTarget, aliases=["posit-connect"])
