"""What tfdeploy knows about a content item, kept in the content's own description on Connect.

tfdeploy keeps no state of its own, and Connect has no field for it: bundles carry no labels
before Connect 2025.12, and environment variables can be written but never read back. So the
content's description ends with one line that tfdeploy writes and reads::

    tfdeploy-record: {"bundles": {"7": {"build": "...", "digest": "sha256:..."}}, ...}

- ``bundles``: for each bundle tfdeploy uploaded, the model's digest and the build
  fingerprint (everything the bundle's bytes depend on), so ``status`` reports the digest of the
  active bundle and an unchanged model is a no-op without sending anything.
- ``environment``: a keyed fingerprint of the environment variables last set (their values
  never leave this machine otherwise, and cannot be read back).
- ``task``: the last deploy task, which no Connect API lists.

The line is also the mark of content that tfdeploy published: it never takes over or deletes
content without it (unless the content is empty).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PREFIX = "tfdeploy-record: "
#: Bundles remembered at most, newest first (the active one is always kept).
MAX_BUNDLES = 20


@dataclass(frozen=True)
class BundleRecord:
    """One uploaded bundle: the model's digest and the bundle's build fingerprint."""

    digest: str
    build: str


@dataclass
class Record:
    """tfdeploy's record of a content item (see the module docstring)."""

    bundles: dict[str, BundleRecord] = field(default_factory=dict)
    environment: str | None = None
    task: str | None = None

    @classmethod
    def parse(cls, description: str | None) -> Record | None:
        """The record in a content description, or ``None`` if it has none.

        A line that cannot be read gives an empty record: the content is still tfdeploy's, and
        what it held is rebuilt by the next deploy.
        """
        for line in (description or "").splitlines():
            if line.startswith(PREFIX):
                try:
                    data = json.loads(line[len(PREFIX) :])
                    return cls._from_json(data)
                except (ValueError, TypeError, KeyError, AttributeError):
                    return cls()
        return None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> Record:
        bundles = {
            str(bundle_id): BundleRecord(str(entry["digest"]), str(entry["build"]))
            for bundle_id, entry in data.get("bundles", {}).items()
        }
        environment = data.get("environment")
        task = data.get("task")
        return cls(
            bundles,
            str(environment) if environment else None,
            str(task) if task else None,
        )

    def keep_only(self, bundle_ids: set[str], active: str | None) -> None:
        """Forget bundles that no longer exist, and all but the newest :data:`MAX_BUNDLES`."""
        kept = sorted((b for b in self.bundles if b in bundle_ids), key=_id_order, reverse=True)
        keep = set(kept[:MAX_BUNDLES]) | ({active} if active in bundle_ids else set())
        self.bundles = {b: r for b, r in self.bundles.items() if b in keep}

    def render(self, intro: str) -> str:
        """A description: ``intro``, then the record's line."""
        data: dict[str, Any] = {
            "bundles": {
                b: {"build": r.build, "digest": r.digest}
                for b, r in sorted(self.bundles.items(), key=lambda item: _id_order(item[0]))
            },
            "environment": self.environment,
            "task": self.task,
        }
        return f"{intro}\n{PREFIX}{json.dumps(data, sort_keys=True, separators=(',', ':'))}"


def _id_order(bundle_id: str) -> tuple[int, str]:
    return (int(bundle_id), "") if bundle_id.isdigit() else (-1, bundle_id)
