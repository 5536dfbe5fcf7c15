"""Version numbers on a plain model base path: next free number, --version, never reused."""

from __future__ import annotations

from pathlib import Path

import pytest

import tfdeploy
from tfdeploy.errors import TargetError


def test_an_explicit_version_must_be_above_every_used_one(
    tmp_path: Path, digits_savedmodel: Path, digits_savedmodel_changed: Path
) -> None:
    settings = {"base_path": str(tmp_path)}
    first = tfdeploy.deploy(
        digits_savedmodel,
        target="tfserving",
        name="m",
        version=5,
        overrides=settings,
        validate=False,
    )
    assert first.results()["tfserving"].status.version == "5"
    with pytest.raises(TargetError, match="version 3 is taken .* \\(highest used: 5\\)"):
        tfdeploy.deploy(
            digits_savedmodel_changed,
            target="tfserving",
            name="m",
            version=3,
            overrides=settings,
            validate=False,
        )
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["5"]
    nxt = tfdeploy.deploy(
        digits_savedmodel_changed, target="tfserving", name="m", overrides=settings, validate=False
    )
    assert nxt.results()["tfserving"].status.version == "6"
    plan = tfdeploy.plan(digits_savedmodel, target="tfserving", name="m", overrides=settings)
    (result,) = plan.results().values()
    assert result.action == "update"
    assert result.changes == (f"copy {result_size(digits_savedmodel)} bytes to {tmp_path / 'm'}/7",)


def result_size(model: Path) -> int:
    return sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
