"""Building the plugin manager: explicit plugins, entry points, allow and deny lists."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

from .. import hookspecs
from .._errors import ConfigError, PluginLoadError, ReactiveCoreError, RegistryError
from .registry import Registry

if TYPE_CHECKING:
    from .host import Host

ENTRY_POINT_GROUP = "reactive_core"


def _names(variable: str) -> set[str] | None:
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def plugin_name(plugin: object) -> str:
    """The name a plugin object is registered under."""
    explicit = getattr(plugin, "name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if isinstance(plugin, type) or hasattr(plugin, "__file__"):
        return getattr(plugin, "__name__", repr(plugin))
    return type(plugin).__name__


def instantiate(plugin: object) -> object:
    """The plugin object for one host: a class (or a factory function) is called with no
    arguments, so each host gets an instance of its own; an object or module is used
    as it is."""
    if isinstance(plugin, type) or inspect.isfunction(plugin):
        return plugin()
    return plugin


def make_plugin_manager(
    plugins: Sequence[object], *, entry_points: bool
) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs, `plugins` and (optionally) entry-point plugins.

    Entry points name a plugin class (or factory); like classes in `plugins`, each is
    instantiated for this plugin manager alone, so plugin state is per host.

    `REACTIVE_PLUGINS` (comma-separated names) allow-lists entry-point plugins,
    `REACTIVE_DISABLE_PLUGINS` deny-lists them; explicitly passed plugins are always
    loaded. A plugin that fails to import is reported by name and stops the host,
    unless it is disabled.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for given in plugins:
        try:
            plugin = instantiate(given)
        except Exception as exc:
            raise PluginLoadError(f"plugin {plugin_name(given)!r} could not be created: "
                                  f"{type(exc).__name__}: {exc}") from exc
        name = plugin_name(plugin)
        if pm.has_plugin(name) and pm.get_plugin(name) is not plugin:
            raise PluginLoadError(
                f"two different plugins are named {name!r}: expected unique plugin names "
                f"(give each a distinct `name` attribute)"
            )
        _register(pm, plugin, name)
    if entry_points:
        allow = _names("REACTIVE_PLUGINS")
        deny = _names("REACTIVE_DISABLE_PLUGINS") or set()
        found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        if allow is not None:
            missing = allow - {ep.name for ep in found}
            if missing:
                raise ConfigError(
                    f"REACTIVE_PLUGINS names {', '.join(sorted(missing))}, which no installed "
                    f"package provides: expected some of "
                    f"{', '.join(sorted(ep.name for ep in found)) or 'none installed'}"
                )
        for ep in found:
            if ep.name in deny or (allow is not None and ep.name not in allow):
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                obj = instantiate(ep.load())
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: "
                    f"{type(exc).__name__}: {exc}. Fix it, or disable it with "
                    f"REACTIVE_DISABLE_PLUGINS={ep.name}"
                ) from exc
            _register(pm, obj, ep.name)
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    if pm.has_plugin(name) or pm.is_registered(plugin):
        return
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"plugin {name!r} is invalid: {exc}") from exc


def run_register(pm: pluggy.PluginManager, registry: Registry, host: Host) -> None:
    """Call every plugin's `reactive_register` in turn, attributing errors to the plugin.

    Then check that every hook implementation matches a spec (plugins may add hook
    specs of their own while registering), so a misspelled hook fails the load.
    """
    registry.plugin_manager = pm
    for impl in reversed(pm.hook.reactive_register.get_hookimpls()):
        registry.current_plugin = impl.plugin_name
        try:
            args = {"registry": registry, "host": host}
            impl.function(**{name: args[name] for name in impl.argnames})
        except RegistryError as exc:
            raise type(exc)(f"plugin {impl.plugin_name!r}: {exc}") from exc
        except ReactiveCoreError:
            raise
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {impl.plugin_name!r} failed in reactive_register: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            registry.current_plugin = None
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else None
        raise PluginLoadError(
            f"plugin {name!r} is invalid: {exc}; expected hooks named as in "
            f"reactive_core.hookspecs (or added by another plugin with add_hookspecs)"
        ) from exc
    registry.finalize()


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """Names of the registered plugins, in registration order."""
    return [name for name, _ in pm.list_name_plugin()]
