"""deploy.yaml: loading, interpolation, errors with file, line and key path, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfdeploy.deployment import config as configuration
from tfdeploy.deployment.registry import get_plugins
from tfdeploy.errors import ConfigError

GOOD = """\
model:
  path: savedmodel
  name: digits
  instances: [[1.0, 2.0]]
verify:
  tolerance: 0.01
targets:
  prod:
    plugin: tfserving
    base_path: ${MODELS:-/srv/models}
    grpc: ${HOST}:8500
  literal:
    plugin: tfserving
    base_path: /opt/$${NOT_A_VAR}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, env: dict[str, str] | None = None, target: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        loaded = configuration.load(path, environ=env or {})
        if target:
            loaded.target_config(target, get_plugins())
    return info.value.message


def test_loads_sections_and_interpolates_variables_with_defaults(tmp_path: Path) -> None:
    loaded = configuration.load(write(tmp_path, GOOD), environ={"HOST": "serving.internal"})
    assert loaded.model_name() == "digits"
    assert loaded.model_path() == (tmp_path / "savedmodel").resolve()
    assert loaded.instances() == [[1.0, 2.0]]
    assert loaded.verify.tolerance == 0.01
    _, prod = loaded.target_config("prod", get_plugins())
    assert prod.base_path == "/srv/models"
    assert prod.grpc == "serving.internal:8500"
    _, literal = loaded.target_config("literal", get_plugins())
    assert literal.base_path == "/opt/${NOT_A_VAR}"


def test_environment_value_wins_over_the_default(tmp_path: Path) -> None:
    loaded = configuration.load(write(tmp_path, GOOD), environ={"HOST": "h", "MODELS": "/data"})
    assert loaded.targets["prod"].settings["base_path"] == "/data"


def test_unset_variable_names_file_line_key_and_variable(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, GOOD))
    assert message.startswith(f"{tmp_path / 'deploy.yaml'}:11: targets.prod.grpc:")
    assert "HOST is not set" in message


def test_unknown_key_names_its_line_path_and_the_allowed_keys(tmp_path: Path) -> None:
    text = GOOD.replace("    grpc: ${HOST}:8500\n", "    grpc: h:1\n    bse_path: /x\n")
    message = error_of(write(tmp_path, text), env={"HOST": "h"}, target="prod")
    assert "deploy.yaml:12: targets.prod.bse_path: unknown key" in message
    assert "allowed: base_path, grpc, rest_url" in message


def test_mistyped_value_names_its_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("    grpc: ${HOST}:8500\n", "    wait_timeout: soon\n")
    message = error_of(write(tmp_path, text), env={"HOST": "h"}, target="prod")
    assert "deploy.yaml:11: targets.prod.wait_timeout:" in message
    assert "number" in message


def test_unknown_top_level_and_model_keys_are_errors(tmp_path: Path) -> None:
    text = GOOD.replace("  name: digits\n", "  nmae: digits\n")
    message = error_of(write(tmp_path, text), env={"HOST": "h"})
    assert (
        "deploy.yaml:3: model.nmae: unknown key (allowed: path, name, signature, instances)"
        in message
    )
    message = error_of(write(tmp_path, "model: {path: x}\ntargts: {}\n"))
    assert "deploy.yaml:2: targts: unknown key" in message


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "model:\n  path: [unclosed\ntargets: {}\n"))
    assert "deploy.yaml:3" in message and "invalid YAML" in message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "model:\n  path: a\n  path: b\n"))
    assert "deploy.yaml:3: model.path: duplicate key" in message


def test_target_without_plugin_or_with_unknown_plugin(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "model: {path: m}\ntargets:\n  prod:\n    base_path: /x\n"))
    assert "deploy.yaml:3: targets.prod: the 'plugin' key is missing" in message
    path = write(tmp_path, "model: {path: m}\ntargets:\n  prod:\n    plugin: nosuch\n")
    message = error_of(path, target="prod")
    assert "deploy.yaml:4: targets.prod.plugin: no deploy target plugin called 'nosuch'" in message
    assert "tfserving" in message


def test_overrides_parse_yaml_scalars_and_dotted_keys() -> None:
    assert configuration.parse_overrides(["port=8500", "name=x", "a.b=true", "empty="]) == {
        "port": 8500,
        "name": "x",
        "a": {"b": True},
        "empty": "",
    }
    with pytest.raises(ConfigError, match="expected key=value"):
        configuration.parse_overrides(["novalue"])


def test_json_schema_describes_every_installed_target() -> None:
    schema = configuration.json_schema(get_plugins())
    json.dumps(schema)
    assert schema["required"] == ["model"]
    targets = schema["properties"]["targets"]["additionalProperties"]["oneOf"]
    by_plugin = {t["properties"]["plugin"]["enum"][0]: t for t in targets}
    assert {"tfserving", "example"} <= set(by_plugin)
    tfs = by_plugin["tfserving"]
    assert tfs["additionalProperties"] is False
    assert tfs["required"] == ["plugin", "base_path"]
    assert "description" in tfs["properties"]["grpc"]
    assert by_plugin["example"]["properties"]["plugin"]["enum"] == ["example", "example-dir"]


def test_the_example_file_at_the_root_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "deploy.yaml.example"
    environ = {"TFSERVING_HOST": "localhost", "CONNECT_API_KEY": "a-key"}
    loaded = configuration.load(example, environ=environ)
    assert loaded.targets
    for name in loaded.targets:
        loaded.target_config(name, get_plugins())


def test_a_deploy_yaml_nested_too_deeply_or_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    deep = "[" * 3000 + "1" + "]" * 3000
    assert "nested too deeply" in error_of(
        write(tmp_path, f"model: {{path: m, instances: {deep}}}\n")
    )
    path = tmp_path / "deploy.yaml"
    path.write_bytes(b'model: {path: m, name: "\xff\xfe"}\n')
    assert "not UTF-8" in error_of(path)
    (tmp_path / "instances.json").write_bytes(b'[["\xff"]]')
    loaded = configuration.load(
        write(tmp_path, "model: {path: m, instances: instances.json}\n"), environ={}
    )
    with pytest.raises(ConfigError, match="not UTF-8"):
        loaded.instances()
