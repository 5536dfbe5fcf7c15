"""tfdeploy's ``cloudml`` target (alias ``vertex``): Vertex AI, the successor of Google CloudML.

One hook registers the target, one adds its validation checks (a ``serving_default``
signature, the serving container's TensorFlow version, the model's size). Like every plugin it
imports tfdeploy only through :mod:`tfdeploy.plugin`; the Google client libraries are imported
when a target first talks to Google Cloud, not when the plugin loads.
"""

from __future__ import annotations

from typing import Any

from tfdeploy.plugin import ExtraCheck, RegisterTarget, Target, hookimpl
from tfdeploy_cloudml import checks
from tfdeploy_cloudml.config import CloudMLConfig
from tfdeploy_cloudml.target import CloudMLTarget

__all__ = ["CloudMLConfig", "CloudMLTarget"]


@hookimpl
def register_targets(register: RegisterTarget) -> None:
    """Register the ``cloudml`` target, also called ``vertex``."""
    register("cloudml", CloudMLTarget, aliases=["vertex"])


@hookimpl
def target_checks(target: Target[Any]) -> list[ExtraCheck] | None:
    """For cloudml targets: the signature, the container's TensorFlow, the model's size."""
    if not isinstance(target, CloudMLTarget):
        return None
    return checks.for_config(target.config)
