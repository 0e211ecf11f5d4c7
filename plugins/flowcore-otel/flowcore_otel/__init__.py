"""flowcore-otel: flowcore's steps as OpenTelemetry traces and metrics.

Installed, it registers an :class:`OpenTelemetryTracer` for every FlowRunner, on the global
tracer and meter providers: each ``run()`` becomes a ``flowcore.run`` span with ``flowcore.load``,
one ``flowcore.task`` per task attempt and ``flowcore.save`` under it, and the metrics
``flowcore.step.duration``, ``flowcore.steps``, ``flowcore.conflicts`` and
``flowcore.task.failures`` count what steps do. It uses the OpenTelemetry API only: the
application sets up the SDK and its exporters, and until it does, the tracer costs next to
nothing.
"""

from __future__ import annotations

from flowcore_otel._metrics import STEP_BUCKETS
from flowcore_otel._tracer import OpenTelemetryTracer

__version__ = "0.1.0"

__all__ = ["STEP_BUCKETS", "OpenTelemetryTracer", "__version__"]
