"""Loading plugins and collecting the deploy targets they register.

Plugins come from the ``tfdeploy`` entry-point group, built-in targets included.
``TFDEPLOY_LOAD_PLUGINS`` (a comma-separated list of entry-point or distribution names; empty
for none) limits which of them load. Loading fails with a :class:`~tfdeploy.errors.PluginError`
when a plugin cannot be imported, implements a hook that does not exist, or claims a target
name another plugin already has.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from tfdeploy.deployment import hookspecs
from tfdeploy.errors import PluginError

if TYPE_CHECKING:
    from tfdeploy.deployment.target import Target

ENTRY_POINT_GROUP = "tfdeploy"
LOAD_PLUGINS_ENV = "TFDEPLOY_LOAD_PLUGINS"


@dataclass(frozen=True)
class TargetType:
    """A registered target: its name, class, aliases and the plugin that registered it."""

    name: str
    target_class: type[Target[Any]]
    plugin: str
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, with the config fields, types, defaults and help."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "plugin": self.plugin,
            "summary": self.target_class.summary(),
            "config": self.target_class.Config.describe_fields(),
        }


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, where it comes from, its hooks and its targets."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    targets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "targets": list(self.targets),
        }


@dataclass
class Plugins:
    """The plugin manager with its plugins loaded, and the targets they registered."""

    manager: pluggy.PluginManager
    targets: dict[str, TargetType] = field(default_factory=dict)
    #: Entry points whose package is gone (a plugin folder removed): name -> why.
    skipped: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    _distributions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def target_type(self, name: str) -> TargetType:
        """The target registered as ``name`` or under an alias, else a :class:`PluginError`."""
        canonical = self.aliases.get(name, name)
        if canonical in self.targets:
            return self.targets[canonical]
        known = ", ".join(sorted([*self.targets, *self.aliases])) or "none installed"
        gone = (
            f"; plugin {name!r} is registered but {self.skipped[name]}"
            if name in self.skipped
            else ""
        )
        raise PluginError(
            f"no deploy target plugin called {name!r} (available: {known}){gone}",
            hint="install the plugin that provides it, or check TFDEPLOY_LOAD_PLUGINS",
        )

    def infos(self) -> list[PluginInfo]:
        """Every loaded plugin, sorted by name."""
        out = []
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:
                continue
            dist = self._distributions.get(name)
            hooks = tuple(sorted(c.name for c in self.manager.get_hookcallers(plugin) or ()))
            targets = tuple(sorted(t.name for t in self.targets.values() if t.plugin == name))
            out.append(
                PluginInfo(
                    name=name,
                    distribution=dist[0] if dist else None,
                    version=dist[1] if dist else None,
                    hooks=hooks,
                    targets=targets,
                )
            )
        return sorted(out, key=lambda p: p.name)


def new_manager() -> pluggy.PluginManager:
    """A plugin manager that knows tfdeploy's hooks and has no plugin yet."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def allowed_names() -> set[str] | None:
    """The names ``TFDEPLOY_LOAD_PLUGINS`` allows, or ``None`` when it is not set."""
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def load(extra: Iterable[tuple[str, object]] = ()) -> Plugins:
    """Load the entry-point plugins (filtered by ``TFDEPLOY_LOAD_PLUGINS``) and ``extra`` ones.

    ``extra`` holds ``(name, plugin)`` pairs registered directly, as tests and embedding
    applications do.
    """
    manager = new_manager()
    allowed = allowed_names()
    distributions: dict[str, tuple[str, str]] = {}
    skipped: dict[str, str] = {}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        if allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        if manager.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except ModuleNotFoundError as exc:
            if exc.name and ep.module.split(".")[0] == exc.name.split(".")[0]:
                # The package was removed but its entry point is still registered.
                skipped[ep.name] = f"{dist or ep.value}: module {exc.name!r} is not installed"
                continue
            raise _load_error(ep.name, dist or ep.value, exc) from exc
        except Exception as exc:  # a broken plugin can raise anything at import
            raise _load_error(ep.name, dist or ep.value, exc) from exc
        _register(manager, plugin, ep.name)
        if ep.dist is not None:
            distributions[ep.name] = (ep.dist.name, ep.dist.version)
    for name, plugin in extra:
        _register(manager, plugin, name)
    plugins = Plugins(manager=manager, skipped=skipped, _distributions=distributions)
    _collect_targets(plugins)
    return plugins


def _load_error(name: str, source: str, exc: BaseException) -> PluginError:
    return PluginError(
        f"plugin {name!r} ({source}) cannot be loaded: {type(exc).__name__}: {exc}",
        hint=f"reinstall or remove it, or leave it out with {LOAD_PLUGINS_ENV}",
    )


def _register(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        manager.register(plugin, name=name)
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        manager.unregister(name=name)
        raise PluginError(
            f"plugin {name!r} is invalid: {exc}",
            hint="hook implementations must match a hook of tfdeploy.plugin "
            "(register_targets, target_checks)",
        ) from exc


def _collect_targets(plugins: Plugins) -> None:
    current: list[str] = []

    def register(
        name: str, target_class: type[Target[Any]], *, aliases: Sequence[str] = ()
    ) -> None:
        from tfdeploy.deployment.target import Target

        plugin = current[0]
        if not (isinstance(target_class, type) and issubclass(target_class, Target)):
            raise PluginError(
                f"plugin {plugin!r} registered target {name!r} with {target_class!r}, "
                "which is not a tfdeploy.plugin.Target subclass"
            )
        for claimed in (name, *aliases):
            owner = _owner(plugins, claimed)
            if owner is not None:
                raise PluginError(
                    f"target name {claimed!r} is claimed by two plugins: {owner!r} and {plugin!r}",
                    hint=f"uninstall one of them, or leave one out with {LOAD_PLUGINS_ENV}",
                )
        plugins.targets[name] = TargetType(
            name=name, target_class=target_class, plugin=plugin, aliases=tuple(aliases)
        )
        for alias in aliases:
            plugins.aliases[alias] = name

    # Call each plugin's implementation separately so every registration knows its plugin.
    for impl in plugins.manager.hook.register_targets.get_hookimpls():
        current[:] = [impl.plugin_name]
        impl.function(register=register)


def _owner(plugins: Plugins, name: str) -> str | None:
    canonical = plugins.aliases.get(name, name)
    found = plugins.targets.get(canonical)
    return found.plugin if found else None


_lock = threading.Lock()
_loaded: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first use."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = load()
        return _loaded


def reset() -> None:
    """Forget the loaded plugins so the next :func:`get_plugins` loads them again."""
    global _loaded
    with _lock:
        _loaded = None
