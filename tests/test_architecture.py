"""The shape of the code, checked: layers, no import cycle, and the one import for plugins."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a plugin may import from tfdeploy.
PLUGIN_SURFACE = ("tfdeploy.plugin", "tfdeploy.testing")


def test_dependencies_point_one_way_from_the_cli_down_to_the_model() -> None:
    """import-linter's layers contract in pyproject.toml holds (cli -> ... -> model -> errors)."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_no_module_of_tfdeploy_takes_part_in_an_import_cycle() -> None:
    import grimp

    graph = grimp.build_graph("tfdeploy")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = _strongly_connected(edges)
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of two or more modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def _plugin_sources() -> list[Path]:
    return sorted(
        [*ROOT.glob("plugins/*/src/**/*.py"), *ROOT.glob("tests/plugins/**/*.py")],
    )


@pytest.mark.parametrize("source", _plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_tfdeploy_only_through_the_plugin_module(source: Path) -> None:
    tree = ast.parse(source.read_text(), filename=str(source))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if (name == "tfdeploy" or name.startswith("tfdeploy.")) and not (
                name.startswith(PLUGIN_SURFACE)
            ):
                bad.append(f"line {node.lineno}: {name}")
    assert not bad, f"{source} imports tfdeploy around tfdeploy.plugin: {bad}"


def test_the_plugin_module_gives_a_target_author_everything() -> None:
    import tfdeploy.plugin as plugin

    needed = [
        "hookimpl", "RegisterTarget", "Target", "TargetConfig", "Status", "VersionStatus",
        "Plan", "DeployResult", "Progress", "Bundle", "Manifest", "ModelInfo", "Check",
        "ExtraCheck", "TfdeployError", "TargetError", "TransientError", "UnsupportedError",
        "ConfigError", "RemoteError", "from_http_status", "from_grpc_status", "request_json",
        "wire", "load_savedmodel", "add_secret", "redact",
    ]  # fmt: skip
    missing = [name for name in needed if not hasattr(plugin, name)]
    assert not missing
    assert sorted(plugin.__all__) == sorted(dir(plugin))


def test_loading_plugins_loads_neither_tensorflow_nor_numpy() -> None:
    """`tfdeploy status` loads every plugin, so their imports must stay light."""
    code = (
        "import sys, tfdeploy.plugin as p\n"
        "from tfdeploy.plugin import Check, ExtraCheck, Status, Target, hookimpl, request_json\n"
        "import tfdeploy_tfserving, tfdeploy_example\n"
        "print('numpy' in sys.modules, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "False"]
