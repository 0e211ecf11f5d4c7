"""LoggingTracer: tasks and steps as stdlib ``logging`` records with structured fields."""

from __future__ import annotations

import logging

from flowcore._tracing import ErrorHandled, RunEnded, TaskEnded, TaskRetrying, Tracer, describe

__all__ = ["LoggingTracer"]


class LoggingTracer(Tracer):
    """Logs every task and every step to ``logger`` (default ``"flowcore"``).

    Each record carries ``session_id``, ``graph_id``, ``task_id``, ``status`` and ``duration_ms``
    as attributes (``extra=``), for formatters and log processors. Finished tasks and steps are
    logged at ``level`` (default INFO); failures, retries and error-handler decisions at WARNING.
    Turn it on for every runner with ``flowcore.register_plugin(flowcore.LoggingTracer())``.
    """

    def __init__(self, logger: logging.Logger | str = "flowcore", *, level: int = logging.INFO):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def task_ended(self, event: TaskEnded) -> None:
        level = self.level if event.error is None else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        outcome = event.status if event.error is None else f"{event.status} ({event.error})"
        self.logger.log(
            level,
            "task %s of session %s: %s in %.2f ms",
            event.task_id,
            event.session_id,
            outcome,
            event.duration_ms,
            extra=_fields(event, event.task_id, event.status, event.duration_ms),
        )

    def task_retrying(self, event: TaskRetrying) -> None:
        if not self.logger.isEnabledFor(logging.WARNING):
            return
        self.logger.warning(
            "task %s of session %s: attempt %d failed, retrying in %.3g s: %s",
            event.task_id,
            event.session_id,
            event.attempt,
            event.delay,
            event.error,
            extra=_fields(event, event.task_id, "retrying", None),
        )

    def error_handled(self, event: ErrorHandled) -> None:
        if not self.logger.isEnabledFor(logging.WARNING):
            return
        self.logger.warning(
            "task %s of session %s: error handler %s decided %r for: %s",
            event.task_id,
            event.session_id,
            describe(event.handler),
            event.decision,
            event.error,
            extra=_fields(event, event.task_id, "handled", None),
        )

    def run_ended(self, event: RunEnded) -> None:
        level = self.level if event.error is None else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        if event.error is None:
            outcome = event.status
        else:
            outcome = f"failed ({type(event.error).__name__}: {event.error})"
        self.logger.log(
            level,
            "step of session %s: %s in %.2f ms, at task %s",
            event.session_id,
            outcome,
            event.duration_ms,
            event.task_id,
            extra=_fields(event, event.task_id, event.status, event.duration_ms),
        )

    def __repr__(self) -> str:
        return (
            f"<LoggingTracer logger={self.logger.name!r} level={logging.getLevelName(self.level)}>"
        )


def _fields(
    event: TaskEnded | TaskRetrying | ErrorHandled | RunEnded,
    task_id: str | None,
    status: str,
    duration_ms: float | None,
) -> dict[str, object]:
    return {
        "session_id": event.session_id,
        "graph_id": event.graph_id,
        "task_id": task_id,
        "status": status,
        "duration_ms": duration_ms,
    }
