"""What Vertex AI holds for one tfdeploy model, and the traffic split a roll-out aims at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfdeploy_cloudml import labels


def resource_id(name: str) -> str:
    """``123`` from ``projects/p/locations/l/endpoints/123`` (or ``models/123@2``)."""
    return name.rsplit("/", 1)[-1].split("@", 1)[0]


def created(deployed: Any) -> float:
    """When a deployed model was made, in seconds (0 when unknown)."""
    stamp = getattr(deployed, "create_time", None)
    try:
        return float(stamp.timestamp()) if stamp else 0.0
    except (AttributeError, ValueError, OSError):
        return 0.0


def plan_split(
    split: Mapping[str, int], deployed: list[Any], target_id: str, percent: int
) -> dict[str, int]:
    """The traffic split once deployed model ``target_id`` has rolled out with ``percent``.

    The rest stays on the deployed model that served the most (the newest among equals); a
    split of 100 or an endpoint where nothing else served gives the target everything.
    Deployed models the split leaves out are to be undeployed.
    """
    others = [d for d in deployed if d.id != target_id]
    if percent >= 100 or not others:
        return {target_id: 100}
    stable = max(others, key=lambda d: (split.get(d.id, 0), created(d)))
    if split.get(stable.id, 0) == 0:
        return {target_id: 100}
    return {target_id: percent, stable.id: 100 - percent}


@dataclass
class Observed:
    """What Vertex AI holds for one tfdeploy model: endpoint, model versions, deployments."""

    endpoint: Any | None
    model: Any | None
    versions: dict[str, Any] = field(default_factory=dict)
    ours: list[Any] = field(default_factory=list)
    foreign: list[Any] = field(default_factory=list)

    @property
    def split(self) -> dict[str, int]:
        """The endpoint's traffic split (deployed model id -> percent)."""
        return dict(self.endpoint.traffic_split) if self.endpoint is not None else {}

    def deployed_of(self, version_id: str) -> list[Any]:
        """The deployed models of a version, the one with most traffic first."""
        split = self.split
        found = [d for d in self.ours if d.model_version_id == version_id]
        return sorted(found, key=lambda d: (split.get(d.id, 0), created(d)), reverse=True)

    def version_with(self, digest: str) -> str | None:
        """The oldest version whose labels carry ``digest``."""
        found = [v for v, m in self.versions.items() if labels.digest_of(m.labels) == digest]
        return min(found, key=int) if found else None

    def serving(self) -> str | None:
        """The version that answers most of the traffic (the newest among equals)."""
        split = self.split
        shares: dict[str, int] = {}
        for d in self.ours:
            shares[d.model_version_id] = shares.get(d.model_version_id, 0) + split.get(d.id, 0)
        live = [(share, int(v), v) for v, share in shares.items() if share > 0]
        return max(live)[2] if live else None
