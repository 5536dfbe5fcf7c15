"""Comparing a target's answers with the local model's, output by output, for ``verify``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OutputComparison:
    """One output of a verify: the largest absolute difference from the local model."""

    output: str
    max_abs_diff: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"output": self.output, "max_abs_diff": self.max_abs_diff, "ok": self.ok}


@dataclass(frozen=True)
class Verification:
    """A target's answers compared with the local model's, output by output."""

    target: str
    tolerance: float
    instances: int
    outputs: tuple[OutputComparison, ...]

    @property
    def ok(self) -> bool:
        """True when every output is within tolerance."""
        return all(o.ok for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "target": self.target,
            "ok": self.ok,
            "tolerance": self.tolerance,
            "instances": self.instances,
            "outputs": [o.to_dict() for o in self.outputs],
        }


def compare(
    expected: Mapping[str, Any], got: Mapping[str, Any], tolerance: float
) -> list[OutputComparison]:
    """Per-output largest absolute difference between two contract answers."""
    import numpy as np

    def columns(answer: Mapping[str, Any]) -> dict[str, Any]:
        if "predictions" in answer:
            rows = answer["predictions"]
            if rows and isinstance(rows[0], Mapping) and not _b64(rows[0]):
                if len(rows[0]) == 1:  # the R package's format keys a single output too
                    return {"predictions": [next(iter(r.values())) for r in rows]}
                return {k: [r.get(k) for r in rows] for k in rows[0]}
            return {"predictions": rows}
        outputs = answer.get("outputs")
        return dict(outputs) if isinstance(outputs, Mapping) else {"outputs": outputs}

    want, have = columns(expected), columns(got)
    out = []
    for key in sorted(set(want) | set(have)):
        if key not in want or key not in have:
            out.append(OutputComparison(key, float("inf"), False))
            continue
        try:
            a = np.asarray(want[key], dtype=np.float64)
            b = np.asarray(have[key], dtype=np.float64)
            diff = (
                float(np.max(np.abs(a - b)))
                if a.shape == b.shape and a.size
                else (0.0 if a.shape == b.shape else float("inf"))
            )
        except (TypeError, ValueError):
            diff = 0.0 if want[key] == have[key] else float("inf")
        out.append(OutputComparison(key, diff, bool(diff <= tolerance)))
    return out


def _b64(value: Mapping[str, Any]) -> bool:
    return len(value) == 1 and "b64" in value
