"""Fixtures of the orchestration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfdeploy.testing.cli import CLI


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """The CLI, run in a fresh process in the test's temporary directory."""
    return CLI(tmp_path)
