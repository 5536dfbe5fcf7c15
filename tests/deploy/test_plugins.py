"""Plugin discovery through entry points, TFDEPLOY_LOAD_PLUGINS, and the errors plugins can cause."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tfdeploy_example import ExampleTarget
from tfdeploy_tfserving import TFServingTarget

import tfdeploy
from tfdeploy.deployment.registry import load
from tfdeploy.errors import PluginError


def test_built_in_and_third_party_targets_come_from_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TFDEPLOY_LOAD_PLUGINS", raising=False)
    plugins = load()
    infos = {p.name: p for p in plugins.infos()}
    assert infos["tfserving"].distribution == "tfdeploy-kit-tfserving"
    assert infos["example"].distribution == "tfdeploy-example-target"
    assert infos["example"].hooks == ("register_targets", "target_checks")
    assert plugins.target_type("tfserving").target_class is TFServingTarget
    assert plugins.target_type("example-dir").target_class is ExampleTarget


def test_load_plugins_variable_limits_which_plugins_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFDEPLOY_LOAD_PLUGINS", "tfserving")
    assert set(load().targets) == {"tfserving"}
    monkeypatch.setenv("TFDEPLOY_LOAD_PLUGINS", "tfdeploy-example-target")  # distribution name
    assert set(load().targets) == {"example"}
    monkeypatch.setenv("TFDEPLOY_LOAD_PLUGINS", "")
    plugins = load()
    assert plugins.targets == {}
    with pytest.raises(PluginError, match="no deploy target plugin called 'tfserving'"):
        plugins.target_type("tfserving")


class Misspelt:
    @tfdeploy.hookimpl
    def register_target(self, register: Any) -> None:  # the hook is register_targets
        pass


def test_a_hook_implementation_matching_no_hook_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TFDEPLOY_LOAD_PLUGINS", "")
    with pytest.raises(PluginError) as info:
        load(extra=[("misspelt", Misspelt())])
    assert "plugin 'misspelt' is invalid" in info.value.message
    assert "register_target" in info.value.message


class Impostor:
    @tfdeploy.hookimpl
    def register_targets(self, register: Any) -> None:
        register("tfserving", ExampleTarget)


class AliasThief:
    @tfdeploy.hookimpl
    def register_targets(self, register: Any) -> None:
        register("thief", ExampleTarget, aliases=["example-dir"])


def test_two_plugins_claiming_one_target_name_is_an_error_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TFDEPLOY_LOAD_PLUGINS", raising=False)
    with pytest.raises(PluginError) as info:
        load(extra=[("impostor", Impostor())])
    assert "'tfserving' is claimed by two plugins: 'tfserving' and 'impostor'" in info.value.message
    with pytest.raises(
        PluginError, match="'example-dir' is claimed by two plugins: 'example' and 'thief'"
    ):
        load(extra=[("thief", AliasThief())])


class NotATarget:
    @tfdeploy.hookimpl
    def register_targets(self, register: Any) -> None:
        register("odd", dict)


def test_registering_something_that_is_not_a_target_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TFDEPLOY_LOAD_PLUGINS", "")
    with pytest.raises(PluginError, match="not a tfdeploy.plugin.Target subclass"):
        load(extra=[("odd", NotATarget())])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process and report on stderr whether TensorFlow was imported."""
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('TENSORFLOW=%s' % ('tensorflow' in sys.modules),"
        " file=sys.stderr))\n"
        "from tfdeploy.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_plugins_and_targets_commands_list_everything_without_tensorflow() -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    assert "TENSORFLOW=False" in result.stderr
    names = {p["name"]: p for p in json.loads(result.stdout)}
    assert names["tfserving"]["targets"] == ["tfserving"]
    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    assert "TENSORFLOW=False" in result.stderr
    targets = {t["name"]: t for t in json.loads(result.stdout)}
    fields = {f["name"]: f for f in targets["tfserving"]["config"]}
    assert fields["base_path"]["required"] is True
    assert fields["protocol"] == {
        "name": "protocol",
        "type": "'grpc' | 'rest'",
        "required": False,
        "default": "grpc",
        "secret": False,
        "help": "How predict talks to the server.",
    }
    assert fields["api_key"]["secret"] is True
    assert targets["example"]["aliases"] == ["example-dir"]
    text = run_cli("targets")
    assert "tfserving — TensorFlow Serving" in text.stdout
    assert "TENSORFLOW=False" in run_cli("--help").stderr


def test_a_removed_plugin_package_is_skipped_and_the_rest_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An entry point left behind by a plugin whose folder was deleted.
    dist_info = tmp_path / "tfdeploy_gone-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tfdeploy-gone\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[tfdeploy]\ngone = tfdeploy_gone_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TFDEPLOY_LOAD_PLUGINS", raising=False)
    plugins = load()
    assert "tfserving" in plugins.targets
    assert "tfdeploy_gone_module" in plugins.skipped["gone"]
    with pytest.raises(PluginError, match="'gone' is registered but tfdeploy-gone: module"):
        plugins.target_type("gone")


def test_a_plugin_that_fails_at_import_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info = tmp_path / "tfdeploy_broken-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tfdeploy-broken\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[tfdeploy]\nbroken = tfdeploy_broken_module\n")
    (tmp_path / "tfdeploy_broken_module.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TFDEPLOY_LOAD_PLUGINS", "broken")
    with pytest.raises(
        PluginError,
        match="plugin 'broken' \\(tfdeploy-broken\\) cannot be loaded: RuntimeError: boom",
    ):
        load()
