"""The names flowcore's telemetry goes by: spans, their attributes and events, and metrics.

They are part of flowcore's design (the first-party plugin family) and fixed: dashboards and
alerts are written against them.
"""

from __future__ import annotations

from typing import Final

SCOPE: Final = "flowcore_otel"
"""The instrumentation scope: the name the tracer and the meter are got by."""

# Spans
RUN: Final = "flowcore.run"
TASK: Final = "flowcore.task"
LOAD: Final = "flowcore.load"
SAVE: Final = "flowcore.save"

# Span attributes
SESSION_ID: Final = "flowcore.session_id"
GRAPH_ID: Final = "flowcore.graph_id"
TASK_ID: Final = "flowcore.task_id"
STATUS: Final = "flowcore.status"
VERSION: Final = "flowcore.version"
ATTEMPT: Final = "flowcore.attempt"
OUTCOME: Final = "flowcore.outcome"
BLOB_SIZE: Final = "flowcore.blob_size"

# The event an error handler's decision is recorded as, on the attempt it decided on
ERROR_HANDLED: Final = "flowcore.error_handled"
HANDLER: Final = "flowcore.handler"
DECISION: Final = "flowcore.decision"

# Metrics
STEP_DURATION: Final = "flowcore.step.duration"
STEPS: Final = "flowcore.steps"
CONFLICTS: Final = "flowcore.conflicts"
TASK_FAILURES: Final = "flowcore.task.failures"
