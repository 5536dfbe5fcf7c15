"""tfdeploy's ``tfserving`` target, registered through the ``tfdeploy`` entry-point group.

One hook registers the target class, one adds the validation check that TF Serving's gRPC
API needs. Like every plugin it imports tfdeploy only through :mod:`tfdeploy.plugin`.
"""

from __future__ import annotations

from collections.abc import Iterable

from tfdeploy.plugin import (
    NUMPY_DTYPES,
    Check,
    ExtraCheck,
    ModelInfo,
    RegisterTarget,
    Target,
    TargetConfig,
    hookimpl,
)
from tfdeploy_tfserving.target import TFServingConfig, TFServingTarget

__all__ = ["TFServingConfig", "TFServingTarget"]


@hookimpl
def register_targets(register: RegisterTarget) -> None:
    """Register the ``tfserving`` target."""
    register("tfserving", TFServingTarget)


@hookimpl
def target_checks(target: Target[TargetConfig]) -> Iterable[ExtraCheck] | None:
    """For tfserving targets: every input and output must travel over gRPC."""
    if not isinstance(target, TFServingTarget):
        return None
    return [_grpc_dtypes]


def _grpc_dtypes(info: ModelInfo) -> Iterable[Check]:
    bad = [
        f"{sig.name}.{spec.key} ({spec.dtype})"
        for sig in info.signatures.values()
        for spec in (*sig.inputs.values(), *sig.outputs.values())
        if spec.dtype not in NUMPY_DTYPES or spec.dtype == "DT_BFLOAT16"
    ]
    if bad:
        yield Check(
            "tfserving: dtypes travel over gRPC",
            "FAIL",
            f"tfdeploy's TF Serving client cannot carry {', '.join(bad)}",
            "cast them to float32, int64, bool or string inside the signature function",
        )
    else:
        yield Check(
            "tfserving: dtypes travel over gRPC", "PASS", "every dtype has a TensorProto field"
        )
