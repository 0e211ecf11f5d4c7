"""The running step as the plugin records it: its tasks, for the breadcrumbs of a failure's event,
and the attempts already reported.

A step is recorded per run in a ContextVar: a tracer's ``run_started`` and ``run_ended`` are
called in the run's own asyncio task, a fan-out's children see their step's record, and a run
inside a task (of another session) has a record of its own until it ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from typing import Any

from flowcore import RunStarted, TaskEnded, TaskRetrying

__all__ = ["MAX_BREADCRUMBS", "StepRecord", "current_step", "end_step", "start_step"]

MAX_BREADCRUMBS = 100
"""The most task breadcrumbs an event carries: the last tasks of a longer chain (Sentry's own
default for ``max_breadcrumbs`` is the same)."""

_RETRYING = 0
_ENDED = 1


class StepRecord:
    """The running step, as the recorder keeps it: its tasks, and the attempts reported."""

    __slots__ = ("graph_id", "reported", "session_id", "started_at", "tasks", "token")

    def __init__(self, event: RunStarted) -> None:
        self.session_id = event.session_id
        self.graph_id = event.graph_id
        self.started_at = time.time()
        # (kind, wall-clock time, event): events are read only when a failure is reported.
        self.tasks: list[tuple[int, float, Any]] = []
        self.reported: set[tuple[str, int]] | None = None
        self.token: Token[StepRecord | None] | None = None

    def retrying(self, event: TaskRetrying) -> None:
        """Attempt ``event.attempt`` failed and is tried again."""
        self.tasks.append((_RETRYING, time.time(), event))

    def ended(self, event: TaskEnded) -> None:
        """A task of the step ended (with a result, or failed)."""
        self.tasks.append((_ENDED, time.time(), event))

    def mark_reported(self, task_id: str, attempt: int) -> None:
        """A handler reported this attempt: the tracer must not report it again."""
        if self.reported is None:
            self.reported = set()
        self.reported.add((task_id, attempt))

    def take_reported(self, task_id: str, attempt: int) -> bool:
        """Whether a handler reported this attempt (forgotten now: a task may run twice)."""
        reported = self.reported
        if not reported or (task_id, attempt) not in reported:
            return False
        reported.discard((task_id, attempt))
        return True

    def breadcrumbs(self) -> Iterator[dict[str, Any]]:
        """The step's start, then each task that ended and each failed attempt retried."""
        yield {
            "type": "default",
            "category": "flowcore.step",
            "level": "info",
            "message": f"step of session {self.session_id!r} (graph {self.graph_id!r}) started",
            "data": {"session_id": self.session_id, "graph_id": self.graph_id},
            "timestamp": _utc(self.started_at),
        }
        for kind, at, event in self.tasks[-MAX_BREADCRUMBS:]:
            yield _retrying_crumb(event, at) if kind == _RETRYING else _ended_crumb(event, at)


_STEP: ContextVar[StepRecord | None] = ContextVar("flowcore_sentry_step", default=None)


def start_step(event: RunStarted) -> None:
    """A run started: its step is the current one, until it ends."""
    step = StepRecord(event)
    step.token = _STEP.set(step)


def current_step() -> StepRecord | None:
    """The record of the step running here; None when no run is recorded."""
    return _STEP.get()


def end_step() -> None:
    """A run ended: the run it ran inside, if any, is current again."""
    step = _STEP.get()
    if step is None or step.token is None:
        return
    try:
        _STEP.reset(step.token)
    except (ValueError, RuntimeError):  # ended in another context than it started in
        _STEP.set(None)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def _ended_crumb(event: TaskEnded, at: float) -> dict[str, Any]:
    task_id = event.task_id
    if event.error is None:
        message, level = f"task {task_id!r} ran: {event.status}", "info"
    elif event.result is not None:
        message, level = f"task {task_id!r} failed, routed: {event.status}", "warning"
    else:
        message, level = f"task {task_id!r} failed", "error"
    return {
        "type": "default",
        "category": "flowcore.task",
        "level": level,
        "message": message,
        "data": {
            "task_id": task_id,
            "status": event.status,
            "attempts": event.attempts,
            "duration_ms": round(event.duration_ms, 3),
        },
        "timestamp": _utc(at),
    }


def _retrying_crumb(event: TaskRetrying, at: float) -> dict[str, Any]:
    cause = event.error.__cause__
    error = type(cause if cause is not None else event.error).__name__
    return {
        "type": "default",
        "category": "flowcore.task",
        "level": "warning",
        "message": (
            f"task {event.task_id!r} attempt {event.attempt} failed ({error}); "
            f"retrying in {event.delay:g} s"
        ),
        "data": {
            "task_id": event.task_id,
            "attempt": event.attempt,
            "error": error,
            "delay": event.delay,
        },
        "timestamp": _utc(at),
    }
