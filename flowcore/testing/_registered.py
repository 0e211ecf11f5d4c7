"""``plugin_registered``: a plugin active for a test, however the test run loads plugins."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flowcore._plugins import manager, register_plugin, unregister_plugin

__all__ = ["plugin_registered"]


@contextlib.contextmanager
def plugin_registered(plugin: object, name: str) -> Iterator[None]:
    """``plugin`` (a module or object with ``@flowcore.hookimpl`` functions) is registered in
    the block: when the test run loaded it already (through its entry point), nothing changes;
    else (a run whose ``FLOWCORE_LOAD_PLUGINS`` leaves it out) it is registered under ``name``
    for the block and unregistered after. A broken plugin raises ``PluginError`` as
    ``register_plugin`` does.
    """
    if manager().is_registered(plugin):
        yield
        return
    registered = register_plugin(plugin, name)
    try:
        yield
    finally:
        unregister_plugin(registered)
