"""flowcore-sentry's plugin: the entry point ``sentry`` in the group ``flowcore`` names this module.

flowcore calls these hooks when its plugins load, and again whenever the set of plugins changes
(which the plugin itself brings about when ``sentry_sdk.init`` has been called since, or when
:func:`flowcore_sentry.configure` changes what it needs). What they register depends on both:

- Sentry not initialised: a tracer of one event that watches for ``sentry_sdk.init``;
- Sentry initialised: a tracer that records each step's tasks and reports failed attempts;
- an error handler only when it routes failures or sends context values (see ``configure``).
"""

from __future__ import annotations

from collections.abc import Callable

from flowcore import hookimpl
from flowcore_sentry._observers import HANDLER, handler_needed, tracer
from flowcore_sentry._settings import current, note_hooks_called

__all__ = ["flowcore_register_error_handlers", "flowcore_register_tracers"]


@hookimpl
def flowcore_register_tracers(register: Callable[[object], None]) -> None:
    """The watcher, or the step recorder once Sentry is initialised."""
    note_hooks_called()
    register(tracer())


@hookimpl
def flowcore_register_error_handlers(register: Callable[[object], None]) -> None:
    """The handler, when it routes failures or sends context values."""
    note_hooks_called()
    if handler_needed(current()):
        register(HANDLER)
