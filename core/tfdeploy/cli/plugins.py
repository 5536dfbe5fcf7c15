"""Commands about plugins and deploy.yaml: ``plugins``, ``targets``, ``config check|schema``."""

from __future__ import annotations

from pathlib import Path

import click

from tfdeploy.cli.options import json_option
from tfdeploy.cli.output import echo, print_json


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List the installed plugins, their hooks and the targets they register."""
    from tfdeploy.deployment.registry import get_plugins

    loaded = get_plugins()
    infos = loaded.infos()
    if as_json:
        print_json([p.to_dict() for p in infos])
        return
    if not infos:
        echo("No plugins installed.")
    for name, why in sorted(loaded.skipped.items()):
        echo(f"{name} (not loaded: {why})")
    for p in infos:
        where = f"{p.distribution} {p.version}" if p.distribution else "registered in-process"
        echo(f"{p.name} ({where})")
        echo(f"  hooks:   {', '.join(p.hooks) or '-'}")
        echo(f"  targets: {', '.join(p.targets) or '-'}")


@click.command()
@json_option
def targets(as_json: bool) -> None:
    """List the deploy targets and their settings: type, default and help."""
    from tfdeploy.deployment.registry import get_plugins

    types = sorted(get_plugins().targets.values(), key=lambda t: t.name)
    if as_json:
        print_json([t.to_dict() for t in types])
        return
    if not types:
        echo("No deploy targets installed.")
    for t in types:
        aliases = f" (aliases: {', '.join(t.aliases)})" if t.aliases else ""
        echo(f"{click.style(t.name, bold=True)}{aliases} — {t.target_class.summary()}")
        echo(f"  plugin: {t.plugin}")
        for f in t.target_class.Config.describe_fields():
            default = "required" if f["required"] else f"default {f['default']!r}"
            echo(f"  {f['name']:<18} {f['type']:<20} {default}")
            if f["help"]:
                echo(f"  {'':<18} {f['help']}")


@click.group()
def config() -> None:
    """Check deploy.yaml, or print its JSON Schema."""


@config.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@json_option
def check(file: Path | None, as_json: bool) -> None:
    """Check deploy.yaml: syntax, variables, the model section and every target's settings."""
    from tfdeploy.deployment import config as configuration
    from tfdeploy.deployment.registry import get_plugins
    from tfdeploy.errors import ConfigError

    found = configuration.find(file) if file else configuration.find()
    if found is None:
        raise ConfigError(f"no deploy.yaml at {file or Path.cwd()}", hint="see deploy.yaml.example")
    loaded = configuration.load(found)
    plugins = get_plugins()
    for name in loaded.targets:
        loaded.target_config(name, plugins)
    loaded.instances()
    summary = {
        "file": str(found),
        "ok": True,
        "model": str(loaded.model_path()),
        "name": loaded.model_name(),
        "targets": {n: e.plugin for n, e in loaded.targets.items()},
    }
    if as_json:
        print_json(summary)
        return
    echo(f"{found}: OK — model {summary['name']} at {summary['model']}")
    for n, e in loaded.targets.items():
        echo(f"  target {n} ({e.plugin})")


@config.command()
def schema() -> None:
    """Print a JSON Schema of deploy.yaml for editors, with every installed target."""
    from tfdeploy.deployment import config as configuration
    from tfdeploy.deployment.registry import get_plugins

    print_json(configuration.json_schema(get_plugins()))


COMMANDS = [plugins, targets, config]
