"""How tfdeploy installs: the built-in targets are extras that a checkout resolves to plugins/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_METADATA = (
    "import os, sys, tempfile\n"
    "from setuptools import build_meta\n"
    "out = tempfile.mkdtemp()\n"
    "name = build_meta.prepare_metadata_for_build_wheel(out)\n"
    "sys.stdout.write(open(os.path.join(out, name, 'METADATA')).read())\n"
)


def _metadata(**env: str) -> list[str]:
    import os

    result = subprocess.run(
        [sys.executable, "-c", _METADATA],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.splitlines()


def test_each_built_in_target_is_an_extra_that_installs_its_plugin_folder() -> None:
    lines = _metadata()
    extras = {line.split(": ", 1)[1] for line in lines if line.startswith("Provides-Extra:")}
    assert {"tensorflow", "serve", "tfserving", "cloudml", "connect", "all"} <= extras
    for folder in sorted((ROOT / "plugins").glob("*/pyproject.toml")):
        name = folder.parent.name
        url = folder.parent.resolve().as_uri()
        wanted = f'Requires-Dist: tfdeploy-kit-{name} @ {url} ; extra == "{name}"'
        assert wanted in lines
        assert f'Requires-Dist: tfdeploy-kit-{name} @ {url} ; extra == "all"' in lines


def test_a_release_build_names_the_published_plugin_distributions() -> None:
    lines = _metadata(TFDEPLOY_RELEASE="1")
    assert 'Requires-Dist: tfdeploy-kit-tfserving; extra == "tfserving"' in lines
    assert not [line for line in lines if "file://" in line]
