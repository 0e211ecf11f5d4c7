"""The plugin's tracer while no OpenTelemetry SDK is set up: it waits, listening to run starts only.

A tracer that listens to task events puts every step on flowcore's observed path, which costs
a few microseconds even when each event is handed to the API's no-op tracer. So, with no SDK set
up when flowcore collects the plugins' registrations, the plugin registers a
:class:`DormantTracer` instead: it looks, at most once every ``check_every`` seconds, whether
the application has set up an SDK since, and then has flowcore collect the registrations again
(by registering and unregistering a marker plugin), which gives every FlowRunner the plugin's
OpenTelemetryTracer from its next step on.
"""

from __future__ import annotations

import logging
import threading
from time import monotonic

from opentelemetry import metrics, trace

import flowcore
from flowcore import PluginError, RunStarted
from flowcore_otel._tracer import OpenTelemetryTracer

__all__ = ["WAKE_PLUGIN", "DormantTracer", "sdk_configured", "tracer_for_plugin"]

WAKE_PLUGIN = "otel-wake"
"""The marker plugin's name, registered for an instant when the dormant tracer wakes."""

_log = logging.getLogger("flowcore_otel")
_API_PACKAGES = (("opentelemetry", "trace"), ("opentelemetry", "metrics"))


def sdk_configured() -> bool:
    """Whether the application has set up an OpenTelemetry SDK: a global tracer or meter
    provider other than the API's own stand-ins (its proxies and no-op providers)."""
    return not (_from_api(trace.get_tracer_provider()) and _from_api(metrics.get_meter_provider()))


def _from_api(provider: object) -> bool:
    return tuple(type(provider).__module__.split(".")[:2]) in _API_PACKAGES


_plugin_tracer: OpenTelemetryTracer | DormantTracer | None = None
_plugin_lock = threading.Lock()


def tracer_for_plugin() -> OpenTelemetryTracer | DormantTracer:
    """What the plugin registers: an OpenTelemetryTracer once an SDK is set up, a DormantTracer
    until then. flowcore collects the plugins' registrations again whenever a plugin is
    registered or unregistered: each time, the same tracer (its runs in flight go on)."""
    global _plugin_tracer
    with _plugin_lock:
        if sdk_configured():
            if not isinstance(_plugin_tracer, OpenTelemetryTracer):
                _plugin_tracer = OpenTelemetryTracer()
        elif _plugin_tracer is None:
            _plugin_tracer = DormantTracer()
        return _plugin_tracer


class DormantTracer:
    """Waits for an OpenTelemetry SDK: on a run's start, at most once every ``check_every``
    seconds, it looks whether one has been set up; if so, it has flowcore collect the plugins'
    registrations again, and the plugin's OpenTelemetryTracer traces every runner from its
    next step on.

    A tracer with one method, ``run_started``, and not a ``flowcore.Tracer``: any object with
    some of the tracer methods is a tracer, and this one has nothing of the base class's to
    inherit.
    """

    check_every = 1.0
    """Seconds between two looks for an SDK."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._next_check = 0.0
        self._awake = False

    def run_started(self, event: RunStarted) -> None:
        if self._awake:
            return
        now = monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.check_every
        if sdk_configured():
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._awake:
                return
            self._awake = True
            try:
                flowcore.unregister_plugin(flowcore.register_plugin(_Wake(), WAKE_PLUGIN))
            except PluginError as exc:
                _log.warning(
                    "An OpenTelemetry SDK is set up, but flowcore-otel could not start tracing "
                    "flowcore's steps: %s. Pass flowcore_otel.OpenTelemetryTracer() to your "
                    "FlowRunner(tracers=[...]) instead.",
                    exc,
                )

    def __repr__(self) -> str:
        state = "awake" if self._awake else "waiting for an OpenTelemetry SDK"
        return f"<DormantTracer {state}>"


class _Wake:
    """A plugin with no hooks: registering it has flowcore collect every registration again."""
