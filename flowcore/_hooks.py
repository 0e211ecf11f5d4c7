"""The hooks a plugin implements, and the markers it implements them with.

A plugin is a module (or any object) whose functions are marked ``@flowcore.hookimpl`` and named
after one of the hook specifications below. Each hook is a *registration* hook: flowcore calls it
once when the plugins load (and again when the set of plugins changes), never during a step, so a
hook costs nothing per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["HOOK_NAMES", "PROJECT_NAME", "HookSpecs", "hookimpl", "hookspec"]

PROJECT_NAME = "flowcore"
"""pluggy's project name, and the entry-point group plugins are installed under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a hook specification (flowcore's own hooks; plugins rarely need it)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's implementation of a flowcore hook: ``@flowcore.hookimpl``."""


class HookSpecs:
    """The hooks flowcore calls. A plugin implements any of them, as functions of the same name."""

    @hookspec
    def flowcore_register_storage(
        self, register: Callable[[str, Callable[..., Any]], None]
    ) -> None:
        """Add storage backends: ``register(scheme, factory)`` for each URL scheme.

        ``factory(url, **options)`` returns a ``SessionStorage``; ``open_storage(url, **options)``
        calls it for URLs of that scheme (``"sqlite"`` serves ``sqlite:///...``; a driver suffix
        is dropped, so ``"postgresql"`` serves ``postgresql+asyncpg://...``).
        """

    @hookspec
    def flowcore_register_codec_types(self, register: Callable[..., Any]) -> None:
        """Add context value types: ``register`` takes ``flowcore.codec.register_type``'s
        arguments, ``register(cls, encode=None, decode=None, *, name=None)``."""

    @hookspec
    def flowcore_register_tracers(self, register: Callable[[object], None]) -> None:
        """Add tracers that every FlowRunner calls: ``register(tracer)``.

        A tracer is a ``flowcore.Tracer`` (or any object with some of its methods).
        """

    @hookspec
    def flowcore_register_error_handlers(self, register: Callable[[Any], None]) -> None:
        """Add error handlers that every FlowRunner asks when a task fails: ``register(handler)``.

        A handler is a callable ``(flowcore.TaskFailure) -> flowcore.ErrorDecision | None``
        (plain or async); None passes the failure to the next handler.
        """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name in vars(HookSpecs) if name.startswith("flowcore_")
)
"""Every hook's name, in the order above: the order the plugin manager calls them in."""
