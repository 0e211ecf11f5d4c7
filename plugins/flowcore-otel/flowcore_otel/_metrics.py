"""The metrics of steps: their duration, how many ran, how many lost a race, how tasks failed."""

from __future__ import annotations

from opentelemetry.metrics import Meter
from opentelemetry.util.types import Attributes

from flowcore_otel._names import (
    CONFLICTS,
    GRAPH_ID,
    OUTCOME,
    STATUS,
    STEP_DURATION,
    STEPS,
    TASK_FAILURES,
    TASK_ID,
)

__all__ = ["STEP_BUCKETS", "StepMetrics"]

STEP_BUCKETS: tuple[float, ...] = (
    *(0.0001, 0.00025, 0.0005),
    *(0.001, 0.0025, 0.005),
    *(0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
"""The histogram's advised bucket bounds, in seconds: a step on in-memory storage takes tens of
microseconds, one on a database a millisecond or so, one that calls a language model seconds
(the SDK's default bounds, 0 to 10,000, suit milliseconds and would put every step in one)."""

_CACHED_MAX = 1024


class StepMetrics:
    """The four instruments, made once from ``meter``, and what a step or a task adds to them."""

    __slots__ = ("_by_step", "conflicts", "step_duration", "steps", "task_failures")

    def __init__(self, meter: Meter) -> None:
        self.step_duration = meter.create_histogram(
            STEP_DURATION,
            unit="s",
            description="How long FlowRunner.run took, by graph and by the step's status",
            explicit_bucket_boundaries_advisory=STEP_BUCKETS,
        )
        self.steps = meter.create_counter(
            STEPS, unit="{step}", description="Calls of FlowRunner.run, by graph and status"
        )
        self.conflicts = meter.create_counter(
            CONFLICTS,
            unit="{conflict}",
            description="Steps that raised SessionConflict (another writer saved first), by graph",
        )
        self.task_failures = meter.create_counter(
            TASK_FAILURES,
            unit="{failure}",
            description="Failed task attempts, by graph, task and what became of the failure",
        )
        # The attributes of each (graph, status) pair, made once: a step records two metrics.
        self._by_step: dict[tuple[str, str], Attributes] = {}

    def step(self, graph_id: str, status: str, seconds: float, conflict: bool) -> None:
        """A call of ``FlowRunner.run`` ended with ``status`` after ``seconds``."""
        key = (graph_id, status)
        attributes = self._by_step.get(key)
        if attributes is None:
            attributes = {GRAPH_ID: graph_id, STATUS: status}
            if len(self._by_step) < _CACHED_MAX:
                self._by_step[key] = attributes
        self.step_duration.record(seconds, attributes)
        self.steps.add(1, attributes)
        if conflict:
            self.conflicts.add(1, {GRAPH_ID: graph_id})

    def task_failed(self, graph_id: str, task_id: str, outcome: str) -> None:
        """An attempt of ``task_id`` failed; ``outcome`` says what became of the failure."""
        self.task_failures.add(1, {GRAPH_ID: graph_id, TASK_ID: task_id, OUTCOME: outcome})
