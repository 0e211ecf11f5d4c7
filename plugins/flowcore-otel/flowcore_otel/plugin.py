"""flowcore-otel's plugin: the entry point ``otel`` in the group ``flowcore`` names this module.

It registers one OpenTelemetryTracer, on the global tracer and meter providers, so that every
FlowRunner reports its steps to the SDK the application sets up. With no SDK set up yet when the
plugins load, it registers a DormantTracer instead, which waits for one at next to no cost and
then starts the OpenTelemetryTracer. To leave the plugin out, name the plugins to load without
it in ``FLOWCORE_LOAD_PLUGINS``, or make a runner with ``plugins=False``.
"""

from __future__ import annotations

from collections.abc import Callable

from flowcore import hookimpl
from flowcore_otel._dormant import tracer_for_plugin

__all__ = ["flowcore_register_tracers"]


@hookimpl
def flowcore_register_tracers(register: Callable[[object], None]) -> None:
    """Trace every FlowRunner's steps through the global OpenTelemetry providers."""
    register(tracer_for_plugin())
