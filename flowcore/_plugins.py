"""The plugin manager: which plugins are loaded, and what they registered.

Plugins load on first use (the first ``FlowRunner``, ``open_storage`` or ``register_plugin``),
not when flowcore is imported: the built-in plugin, then every installed distribution's entry
points in the group ``flowcore`` that ``FLOWCORE_LOAD_PLUGINS`` lets through. Then each
registration hook is called once, and what the plugins registered is kept in a
:class:`Registry`. A new registry replaces it whenever the set of plugins changes; runners
compare the one they resolved against :data:`active_registry` and resolve again when it differs.

An installed plugin that fails (an import error, a hook that matches no specification, a
registration hook that raises) is left out with a :class:`PluginWarning`, and the others load.
A plugin registered at run time with :func:`register_plugin` fails with :class:`PluginError`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pluggy

from flowcore import _memory_plugin
from flowcore._errors import PluginError, PluginWarning
from flowcore._handlers import Handler, check_handler
from flowcore._hooks import HOOK_NAMES, PROJECT_NAME, HookSpecs
from flowcore._storage import SessionStorage
from flowcore._tracing import tracer_methods
from flowcore.codec import register_type, unregister_type

__all__ = [
    "BUILTIN_PLUGIN",
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "PluginInfo",
    "Registry",
    "active_registry",
    "manager",
    "plugin_infos",
    "register_plugin",
    "registry",
    "reset",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = PROJECT_NAME
LOAD_PLUGINS_ENV = "FLOWCORE_LOAD_PLUGINS"
BUILTIN_PLUGIN = "flowcore"
"""The name the built-in plugin is registered under."""

StorageFactory = Callable[..., SessionStorage]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9.-]*")  # RFC 3986, less "+" (it starts a driver)


@dataclasses.dataclass
class PluginInfo:
    """One plugin as ``flowcore plugins`` lists it."""

    name: str
    origin: str  # "builtin", "entry point" or "registered"
    status: str  # "loaded", "failed", "excluded" (by FLOWCORE_LOAD_PLUGINS) or "missing"
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


class Registry:
    """What the loaded plugins registered, in pluggy's call order (the last registered first)."""

    def __init__(self) -> None:
        self.storage: dict[str, tuple[StorageFactory, str]] = {}
        self.conflicts: dict[str, str] = {}  # scheme -> why several plugins cannot share it
        self.codec_types: list[type] = []
        self.tracers: tuple[object, ...] = ()
        self.error_handlers: tuple[Handler, ...] = ()
        self.problems: dict[str, list[str]] = {}  # plugin name -> what went wrong

    def storage_factory(self, scheme: str) -> StorageFactory | None:
        """The factory for ``scheme``; PluginError when several plugins claim it."""
        conflict = self.conflicts.get(scheme)
        if conflict is not None:
            raise PluginError(conflict)
        entry = self.storage.get(scheme)
        return None if entry is None else entry[0]

    def storage_plugin(self, scheme: str) -> str:
        """The name of the plugin that registered ``scheme``."""
        return self.storage[scheme][1]


active_registry: Registry | None = None
"""The registry of the loaded plugins (None until they load); replaced, never changed."""

_manager: _PluginManager | None = None
_lock = threading.RLock()


def _from_distribution(pm: _PluginManager, plugin_name: str) -> str:
    info = pm.infos.get(plugin_name)
    if info is None or info.distribution is None:
        return ""
    return f" (from distribution {info.distribution} {info.version})"


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, checking plugins as they register and collecting what they register."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(HookSpecs)
        self.infos: dict[str, PluginInfo] = {}
        self.registry = Registry()
        self.loading = True  # while the installed plugins load, collect once at the end

    def register(self, plugin: object, name: str | None = None) -> str | None:
        if self.is_registered(plugin):
            raise PluginError(f"{plugin!r} is already registered as '{self.get_name(plugin)}'")
        wanted = name or self.get_canonical_name(plugin)
        if self.get_plugin(wanted) is not None:
            raise PluginError(
                f"A plugin named '{wanted}' is already registered; pass another name="
            )
        try:
            registered = super().register(plugin, name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"Plugin {name or plugin!r} cannot be registered: {exc}") from exc
        if registered is None:
            return None
        unknown = [
            caller.name for caller in self.get_hookcallers(plugin) or () if not caller.has_spec()
        ]
        if unknown:
            super().unregister(plugin)
            raise PluginError(
                f"Plugin '{registered}' implements {', '.join(sorted(unknown))}, which "
                f"{'is not a flowcore hook' if len(unknown) == 1 else 'are not flowcore hooks'}"
                f"; the hooks are: {', '.join(HOOK_NAMES)}"
            )
        if not self.loading:
            self.collect()
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        if name is None and plugin is not None:
            name = self.get_name(plugin)
        removed = super().unregister(plugin, name)
        if removed is not None and not self.loading:
            self.infos.pop(name or "", None)
            self.collect()
        return removed

    def collect(self) -> Registry:
        """Call every registration hook and make the result the active registry."""
        global active_registry
        for cls in self.registry.codec_types:
            unregister_type(cls)
        registry = _collect(self)
        self.registry = registry
        active_registry = registry
        return registry


class _Collecting:
    """A new registry as the registration hooks fill it."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.claims: dict[str, list[str]] = {}  # scheme -> every plugin that registered it
        self.tracers: list[object] = []
        self.handlers: list[Handler] = []


class _Registrars:
    """The ``register`` functions one plugin's hooks are handed: each hook gets the method of
    its own name (as a hook's name finds its specification), which adds to what is collected."""

    def __init__(self, collecting: _Collecting, plugin: str) -> None:
        self._collecting = collecting
        self._plugin = plugin

    def flowcore_register_storage(self, scheme: str, factory: StorageFactory) -> None:
        if type(scheme) is not str or not _SCHEME.fullmatch(scheme):
            raise ValueError(
                "a storage scheme is a URL scheme without a driver suffix, such as "
                f"'sqlite' or 'postgresql'; got {scheme!r}"
            )
        if not callable(factory):
            raise TypeError(f"the factory for scheme '{scheme}' is not callable: {factory!r}")
        key = scheme.lower()
        claimants = self._collecting.claims.setdefault(key, [])
        if self._plugin not in claimants:
            claimants.append(self._plugin)
        self._collecting.registry.storage.setdefault(key, (factory, self._plugin))

    def flowcore_register_codec_types(self, cls: type, *args: Any, **kwargs: Any) -> None:
        self._collecting.registry.codec_types.append(register_type(cls, *args, **kwargs))

    def flowcore_register_tracers(self, obj: object) -> None:
        tracer_methods(obj)  # TypeError now, rather than in the first step
        self._collecting.tracers.append(obj)

    def flowcore_register_error_handlers(self, obj: object) -> None:
        self._collecting.handlers.append(check_handler(obj))


def _collect(pm: _PluginManager) -> Registry:
    collecting = _Collecting()
    registry = collecting.registry
    for hook_name in HOOK_NAMES:
        caller: pluggy.HookCaller = getattr(pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # pluggy's call order
            register = getattr(_Registrars(collecting, impl.plugin_name), hook_name)
            try:
                impl.function(*(register for _ in impl.argnames))
            except Exception as exc:
                registry.problems.setdefault(impl.plugin_name, []).append(
                    f"{hook_name} raised {type(exc).__name__}: {exc}"
                )
    for scheme, claimants in collecting.claims.items():
        if len(claimants) > 1:
            names = " and ".join(f"'{name}'{_from_distribution(pm, name)}" for name in claimants)
            message = (
                f"Storage scheme '{scheme}' is claimed by several plugins: {names}. Uninstall "
                f"all but one, or choose with {LOAD_PLUGINS_ENV}=<comma-separated plugin names>"
            )
            registry.conflicts[scheme] = message
            for name in claimants:
                registry.problems.setdefault(name, []).append(message)
    registry.tracers = tuple(collecting.tracers)
    registry.error_handlers = tuple(collecting.handlers)
    return registry


def _selected_names() -> set[str] | None:
    """The entry-point names FLOWCORE_LOAD_PLUGINS lets load; None when it is unset (all)."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _flowcore_version() -> str | None:
    try:
        return importlib.metadata.version("flowcore")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover (run from a checkout)
        return None


def _load_entry_points(pm: _PluginManager, selected: set[str] | None) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            ep.name,
            "entry point",
            "loaded",
            distribution=None if dist is None else dist.name,
            version=None if dist is None else dist.version,
            module=ep.value,
        )
        where = f" (from distribution {info.distribution} {info.version})" if dist else ""
        if selected is not None and ep.name not in selected:
            info.status = "excluded"
        elif ep.name in pm.infos:
            info.status = "failed"
            info.errors.append(
                f"Plugin '{ep.name}'{where} is not loaded: another plugin has that name"
                f"{_from_distribution(pm, ep.name)}"
            )
        else:
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                info.status = "failed"
                info.errors.append(
                    f"Plugin '{ep.name}'{where} could not be loaded: {type(exc).__name__}: {exc}"
                )
        pm.infos.setdefault(ep.name, info)
    for name in sorted((selected or set()) - set(pm.infos)):
        pm.infos[name] = PluginInfo(
            name,
            "entry point",
            "missing",
            errors=[f"{LOAD_PLUGINS_ENV} names '{name}', but no installed plugin has that name"],
        )


def _load() -> _PluginManager:
    """A manager with the built-in and the installed plugins, warning about the broken ones."""
    global _manager
    pm = _PluginManager()
    pm.register(_memory_plugin, name=BUILTIN_PLUGIN)
    pm.infos[BUILTIN_PLUGIN] = PluginInfo(
        BUILTIN_PLUGIN,
        "builtin",
        "loaded",
        distribution="flowcore",
        version=_flowcore_version(),
        module=_memory_plugin.__name__,
    )
    _load_entry_points(pm, _selected_names())
    pm.loading = False
    registry = pm.collect()
    _manager = pm
    # Warn only once the state is complete: under warnings-as-errors a warning raises.
    for info in pm.infos.values():
        for message in (*info.errors, *registry.problems.get(info.name, ())):
            warnings.warn(message, PluginWarning, stacklevel=4)
    return pm


def manager() -> _PluginManager:
    """The plugin manager, loading the plugins on the first call."""
    pm = _manager
    if pm is not None:
        return pm
    with _lock:
        return _manager if _manager is not None else _load()


def registry() -> Registry:
    """What the loaded plugins registered (loading them on the first call)."""
    return manager().registry


def reset() -> None:
    """Forget every plugin; the next use loads them again (for tests)."""
    global _manager, active_registry
    with _lock:
        if _manager is not None:
            for cls in _manager.registry.codec_types:
                unregister_type(cls)
        _manager = None
        active_registry = None


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` (a module, class or object with ``@flowcore.hookimpl`` functions).

    Its registrations apply to every FlowRunner from the next step on and to ``open_storage``.
    Returns the name it is registered under. Raises PluginError if the plugin is broken (a hook
    that matches no specification, a registration hook that raises, a storage scheme another
    plugin has), leaving the plugins as they were.
    """
    with _lock:
        pm = manager()
        registered = pm.register(plugin, name)
        if registered is None:
            raise PluginError(f"Plugin name {name!r} is blocked; nothing was registered")
        problems = pm.registry.problems.get(registered)
        if problems:
            pm.unregister(plugin)
            raise PluginError(f"Plugin '{registered}' cannot be registered: {'; '.join(problems)}")
        module = getattr(plugin, "__name__", None) or type(plugin).__module__
        pm.infos[registered] = PluginInfo(registered, "registered", "loaded", module=module)
        return registered


def unregister_plugin(plugin: object) -> object:
    """Unregister a plugin, given as the object or the name it was registered under.

    Returns the plugin; PluginError if no such plugin is registered.
    """
    with _lock:
        pm = manager()
        if isinstance(plugin, str):
            name: str | None = plugin
            obj = pm.get_plugin(plugin)
        else:
            name, obj = pm.get_name(plugin), plugin
        if name is None or obj is None:
            registered = ", ".join(sorted(n for n, p in pm.list_name_plugin() if p is not None))
            raise PluginError(f"No plugin {plugin!r} is registered (registered: {registered})")
        pm.unregister(obj, name)
        return obj


def plugin_infos() -> list[PluginInfo]:
    """Every plugin flowcore knows of: its hooks, and what went wrong with it."""
    pm = manager()
    infos = []
    for info in pm.infos.values():
        plugin = pm.get_plugin(info.name)
        callers = pm.get_hookcallers(plugin) if plugin is not None else None
        infos.append(
            dataclasses.replace(
                info,
                hooks=sorted(caller.name for caller in callers or ()),
                errors=[*info.errors, *pm.registry.problems.get(info.name, ())],
            )
        )
    return infos
