"""deploy.yaml: the model to deploy and the named targets to deploy it to.

::

    model:
      path: ./savedmodel          # relative to this file
      name: digits
      signature: serving_default
      instances: examples.json    # or an inline list; used by validate and verify
    verify:
      tolerance: 1.0e-4
    targets:
      prod:
        plugin: tfserving
        base_path: ${MODELS_DIR:-/srv/models}

Strings may use ``${VAR}`` and ``${VAR:-default}`` from the environment (``$${`` is a literal
``${``). Every error names the file, the line and the key path. Values that land in a secret
field, or come from a variable whose name looks secret (``TOKEN``, ``SECRET``, ``PASSWORD``,
``KEY``, ``CREDENTIAL``...), are registered with :func:`tfdeploy.secrets.add_secret` and never
printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from tfdeploy.errors import ConfigError
from tfdeploy.model.signatures import DEFAULT_SIGNATURE
from tfdeploy.secrets import add_secret, looks_secret

if TYPE_CHECKING:
    from tfdeploy.deployment.registry import Plugins, TargetType
    from tfdeploy.deployment.target import TargetConfig

DEFAULT_FILE = "deploy.yaml"
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
KeyPath = tuple[str | int, ...]


# --- the file's sections -------------------------------------------------------------------


class ModelSection(BaseModel):
    """deploy.yaml's ``model`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="The SavedModel directory, relative to deploy.yaml.")
    name: str | None = Field(
        default=None, description="The model's name on the targets (default: the folder's name)."
    )
    signature: str = Field(
        default=DEFAULT_SIGNATURE, description="The signature validate and verify predict with."
    )
    instances: list[Any] | str | None = Field(
        default=None,
        description="Example instances for validate and verify: a list, or a JSON / JSON-lines "
        "file relative to deploy.yaml.",
    )


class VerifySection(BaseModel):
    """deploy.yaml's ``verify`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tolerance: float = Field(
        default=1e-4, ge=0, description="Largest absolute difference verify accepts."
    )


class _TopLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelSection
    verify: VerifySection = VerifySection()
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)


@dataclass(frozen=True)
class TargetEntry:
    """One named target of deploy.yaml: its plugin and its raw (interpolated) settings."""

    name: str
    plugin: str
    settings: dict[str, Any]


@dataclass
class DeployConfig:
    """A loaded deploy.yaml."""

    path: Path
    model: ModelSection
    verify: VerifySection
    targets: dict[str, TargetEntry]
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Path:
        """The directory relative paths are resolved against."""
        return self.path.parent

    def model_path(self) -> Path:
        """The SavedModel path, resolved against the file's directory."""
        return (self.root / os.path.expanduser(self.model.path)).resolve()

    def model_name(self) -> str:
        """The model's name: ``model.name``, or the SavedModel folder's name."""
        if self.model.name:
            return self.model.name
        path = self.model_path()
        return path.parent.name if path.name.isdigit() else path.name

    def instances(self) -> Any:
        """The example instances, read from their file when ``model.instances`` names one."""
        raw = self.model.instances
        if not isinstance(raw, str):
            return raw
        from tfdeploy.predict.wire import parse_instances_text

        source = self.root / raw
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{self.where(('model', 'instances'))}: cannot read {source}: {exc.strerror}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{self.where(('model', 'instances'))}: {source} is not UTF-8 text"
            ) from exc
        return parse_instances_text(text, where=str(source))

    def where(self, path: KeyPath) -> str:
        """``file:line: key.path`` for a key (the line of its nearest known ancestor)."""
        line = None
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                break
        return _where(self.path, line, path)

    def target_config(
        self, name: str, plugins: Plugins, overrides: Mapping[str, Any] | None = None
    ) -> tuple[TargetType, TargetConfig]:
        """The plugin and the validated, typed config of the target called ``name``.

        ``overrides`` (``-C key=value`` settings) are merged over the file's settings before
        the one validation, so an override can supply a key the file leaves out.
        """
        overrides = dict(overrides or {})
        entry = self.targets.get(name)
        if entry is None:
            known = ", ".join(sorted(self.targets)) or "none"
            raise ConfigError(f"{self.path}: no target called {name!r} (targets: {known})")
        try:
            target_type = plugins.target_type(entry.plugin)
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            raise ConfigError(
                f"{self.where(('targets', name, 'plugin'))}: {message}",
                hint=getattr(exc, "hint", None),
            ) from exc
        config = build_target_config(
            target_type.target_class.Config,
            {**entry.settings, **overrides},
            where=lambda key: (
                override_place(key)
                if key and key[0] in overrides
                else self.where(("targets", name, *key))
            ),
        )
        return target_type, config


def _where(file: Path | str, line: int | None, path: KeyPath) -> str:
    keys = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
    location = f"{file}:{line}" if line is not None else str(file)
    return f"{location}: {keys}" if keys else location


def override_place(key: KeyPath) -> str:
    """How an error names a setting given on the command line: ``-C labels.canary``."""
    return "-C " + ".".join(map(str, key))


def build_target_config(
    config_class: type[TargetConfig],
    settings: Mapping[str, Any],
    *,
    where: Callable[[KeyPath], str] | None = None,
) -> TargetConfig:
    """Validate ``settings`` into ``config_class``, with errors naming key, place and allowed keys.

    ``where(key_path)`` gives the place of a key (``deploy.yaml:12: targets.prod.port``);
    without it the key path alone is used.
    """
    try:
        config = config_class.model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_class, where)) from None
    for name in config_class.secret_fields():
        value = getattr(config, name)
        # A field that holds several secrets (a mapping of SecretStr) prints masked as it is;
        # its target registers the values worth masking in every message.
        if isinstance(value, SecretStr):
            add_secret(value.get_secret_value())
    return config


def _describe(
    exc: ValidationError, config_class: type[BaseModel], where: Callable[[KeyPath], str] | None
) -> str:
    messages = []
    for error in exc.errors(include_input=False, include_url=False):
        loc: KeyPath = tuple(error["loc"])
        place = where(loc) if where else ".".join(map(str, loc))
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(_fields_at(config_class, loc[:-1]))
            messages.append(f"{place}: unknown key (allowed: {allowed})")
        elif error["type"] == "missing":
            messages.append(f"{place}: required key missing")
        else:
            messages.append(f"{place}: {error['msg']}")
    return "; ".join(messages)


def _fields_at(model: type[BaseModel], path: KeyPath) -> list[str]:
    for part in path:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# --- loading -------------------------------------------------------------------------------


def find(start: str | os.PathLike[str] | None = None) -> Path | None:
    """deploy.yaml in ``start`` (a file or directory; default: the working directory)."""
    path = Path(start) if start is not None else Path.cwd()
    if path.is_file():
        return path
    candidate = path / DEFAULT_FILE
    return candidate if candidate.is_file() else None


def target_names(path: str | os.PathLike[str]) -> list[str]:
    """The target names a deploy.yaml declares, read leniently: nothing is checked or
    interpolated, and a file that cannot be read or parsed declares none."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return []
    targets = data.get("targets") if isinstance(data, dict) else None
    return [str(name) for name in targets] if isinstance(targets, dict) else []


def load(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> DeployConfig:
    """Read and check deploy.yaml at ``path``, interpolating ``${VAR}`` from ``environ``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {file}: {exc.strerror}",
            hint="create a deploy.yaml (see deploy.yaml.example) or pass --config FILE",
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    env = os.environ if environ is None else environ
    lines: dict[KeyPath, int] = {}
    data = _parse(text, file, env, lines)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the file must hold a mapping with 'model' and 'targets'")
    try:
        top = _TopLevel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _describe(exc, _TopLevel, lambda loc: _where_in(file, lines, loc))
        ) from None
    config = DeployConfig(path=file, model=top.model, verify=top.verify, targets={}, lines=lines)
    for name, settings in top.targets.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{config.where(('targets', name))}: a target must be a mapping")
        plugin = settings.get("plugin")
        if not isinstance(plugin, str) or not plugin:
            raise ConfigError(
                f"{config.where(('targets', name))}: the 'plugin' key is missing",
                hint="name the plugin that deploys it, e.g. plugin: tfserving (see tfdeploy targets)",
            )
        rest = {k: v for k, v in settings.items() if k != "plugin"}
        config.targets[name] = TargetEntry(name=name, plugin=plugin, settings=rest)
    return config


def _where_in(file: Path, lines: dict[KeyPath, int], path: KeyPath) -> str:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return _where(file, lines[path[:n]], path)
    return _where(file, None, path)


def _parse(text: str, file: Path, env: Mapping[str, str], lines: dict[KeyPath, int]) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{file}: the file is empty", hint="see deploy.yaml.example")
        return _build(loader, node, (), file, env, lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}{line}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{file}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    file: Path,
    env: Mapping[str, str],
    lines: dict[KeyPath, int],
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError(
                    f"{_where(file, key_node.start_mark.line + 1, path)}: keys must be strings, "
                    f"not {key!r}"
                )
            child = (*path, key)
            if key in out:
                raise ConfigError(
                    f"{_where(file, key_node.start_mark.line + 1, child)}: duplicate key"
                )
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, child, file, env, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), file, env, lines) for i, item in enumerate(node.value)
        ]
    if isinstance(node, yaml.ScalarNode) and "${" in str(node.value):
        return _interpolate(str(node.value), env, _where(file, node.start_mark.line + 1, path))
    return loader.construct_object(node, deep=True)


def _interpolate(value: str, env: Mapping[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{where}: environment variable {name} is not set",
                    hint=f"export {name}=..., or give a default: ${{{name}:-value}}",
                )
            return default
        if looks_secret(name):
            add_secret(found)
        return found

    return _VAR.sub(substitute, value)


# --- targets given on the command line -----------------------------------------------------


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``-C key=value`` pairs as a mapping; values are read as YAML scalars (``8500`` is a number).

    Dotted keys nest: ``-C labels.canary=2``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"-C {pair!r}: expected key=value", hint="e.g. -C base_path=/models")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


# --- JSON Schema ---------------------------------------------------------------------------


def json_schema(plugins: Plugins) -> dict[str, Any]:
    """A JSON Schema for deploy.yaml with every installed target's configuration, for editors."""
    target_schemas = []
    definitions: dict[str, Any] = {}
    for target_type in sorted(plugins.targets.values(), key=lambda t: t.name):
        schema = target_type.target_class.Config.model_json_schema(ref_template="#/$defs/{model}")
        definitions.update(schema.pop("$defs", {}))
        names = [target_type.name, *target_type.aliases]
        schema.setdefault("properties", {})
        schema["properties"] = {
            "plugin": {"enum": names, "description": "The plugin that deploys this target."},
            **schema["properties"],
        }
        schema["required"] = ["plugin", *schema.get("required", [])]
        schema["additionalProperties"] = False
        schema["title"] = f"{target_type.name} target"
        target_schemas.append(schema)
    top = _TopLevel.model_json_schema(ref_template="#/$defs/{model}")
    definitions.update(top.pop("$defs", {}))
    target_schema: dict[str, Any] = {
        "type": "object",
        "required": ["plugin"],
        "properties": {"plugin": {"type": "string"}},
    }
    if target_schemas:
        target_schema = {"oneOf": target_schemas}
    top["properties"]["targets"] = {
        "type": "object",
        "description": "Named targets, each with its plugin and that plugin's settings.",
        "additionalProperties": target_schema,
    }
    top.update(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "tfdeploy deploy.yaml",
            "$defs": definitions,
        }
    )
    return top
