"""The plugin guide shows the example plugin's real files, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
_EMBEDDED = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<code>.*?)```\n", re.DOTALL)


def test_the_plugin_guide_embeds_the_example_plugin_verbatim() -> None:
    embedded = {m["path"]: m["code"] for m in _EMBEDDED.finditer(GUIDE.read_text())}
    example = ROOT / "tests" / "plugins" / "example"
    files = {
        p.relative_to(ROOT).as_posix()
        for p in [*example.rglob("*.py"), example / "pyproject.toml"]
        if "__pycache__" not in p.parts
    }
    assert set(embedded) == files, "docs/plugins.md must show every file of the example plugin"
    for path, code in embedded.items():
        assert code == (ROOT / path).read_text(), f"docs/plugins.md's copy of {path} has drifted"


def test_the_plugin_guide_imports_tfdeploy_only_through_the_plugin_module() -> None:
    text = GUIDE.read_text()
    imports = re.findall(r"^\s*(?:from|import) (tfdeploy(?:\.[\w.]+)?)\s", text, re.MULTILINE)
    assert imports
    assert all(name in ("tfdeploy.plugin", "tfdeploy.testing.contract") for name in imports)
