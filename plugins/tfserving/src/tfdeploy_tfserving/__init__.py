"""tfdeploy's ``tfserving`` target, registered through the ``tfdeploy`` entry-point group.

This package is the example plugin authors copy: one hook registers the target class, one
adds the validation checks that its constraints need.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import tfdeploy
from tfdeploy.hookspecs import RegisterTarget
from tfdeploy.signatures import NUMPY_DTYPES, ModelInfo
from tfdeploy.targets import Target, TargetConfig
from tfdeploy_tfserving.client import DTYPE_NUMBERS
from tfdeploy_tfserving.target import TFServingConfig, TFServingTarget

if TYPE_CHECKING:
    from tfdeploy.validate import Check, ExtraCheck

__all__ = ["TFServingConfig", "TFServingTarget"]


@tfdeploy.hookimpl
def register_targets(register: RegisterTarget) -> None:
    """Register the ``tfserving`` target."""
    register("tfserving", TFServingTarget)


@tfdeploy.hookimpl
def target_checks(target: Target[TargetConfig]) -> Iterable[ExtraCheck] | None:
    """For tfserving targets: every input and output must travel over gRPC."""
    if not isinstance(target, TFServingTarget):
        return None
    return [_grpc_dtypes]


def _grpc_dtypes(info: ModelInfo) -> Iterable[Check]:
    from tfdeploy.validate import Check

    bad = [
        f"{sig.name}.{spec.key} ({spec.dtype})"
        for sig in info.signatures.values()
        for spec in (*sig.inputs.values(), *sig.outputs.values())
        if NUMPY_DTYPES.get(spec.dtype, "?") not in DTYPE_NUMBERS
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
