"""What the plugin registers with flowcore: a tracer, and an error handler when one is needed.

- :class:`SentryWatcher` is the tracer while Sentry is not initialised. It listens to one event,
  the start of a run, and looks whether ``sentry_sdk.init`` has been called since; when it has,
  it makes flowcore collect the plugins' registrations again, and runners take the recorder from
  their next step. A step costs it one small event and a look at Sentry's global client.
- :class:`StepRecorder` is the tracer once Sentry is initialised. It keeps the tasks of the
  running step (:mod:`flowcore_sentry._step`), for the breadcrumbs, and reports every failed attempt
  that no handler of this plugin reported: the attempts a RetryPolicy retries, and the failures
  that another error handler decided on first.
- :class:`SentryHandler` is registered only when it has something to do: routing a failure to a
  fallback task, or reporting it with the context's values (which only a handler sees). A
  handler costs each task it applies to an encode of its context before it runs, so it applies
  to no more tasks than that needs.

One event per failed attempt: the handler marks each attempt it reports in the step's record,
and the recorder reports only those it finds unmarked.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import flowcore
from flowcore import (
    Context,
    ErrorDecision,
    NextAction,
    RunEnded,
    RunStarted,
    Task,
    TaskEnded,
    TaskExecutionFailed,
    TaskFailure,
    TaskRetrying,
)
from flowcore_sentry import _sentry
from flowcore_sentry._settings import Settings, current
from flowcore_sentry._step import StepRecord, current_step, end_step, start_step

if TYPE_CHECKING:
    from sentry_sdk import Scope

__all__ = [
    "HANDLER",
    "RECORDER",
    "WATCHER",
    "SentryHandler",
    "SentryWatcher",
    "StepRecorder",
    "handler_needed",
    "refresh",
    "tracer",
]

_log = logging.getLogger("flowcore_sentry")


def _report_attempt(
    error: BaseException,
    session_id: str,
    graph_id: str,
    task_id: str,
    attempt: int,
    step: StepRecord | None,
    context: Context | None = None,
    settings: Settings | None = None,
) -> None:
    """Report one failed attempt, with the values of ``context`` that ``settings`` ask for; a
    failure of the plugin is logged, never raised."""
    try:
        extra = None if context is None or settings is None else _context_values(context, settings)
        _sentry.report(
            error,
            session_id=session_id,
            graph_id=graph_id,
            task_id=task_id,
            attempt=attempt,
            breadcrumbs=() if step is None else step.breadcrumbs(),
            extra=extra,
        )
    except Exception:
        _log.exception(
            "flowcore-sentry could not report the failure of task %r (attempt %d) of session "
            "%r; the step goes on",
            task_id,
            attempt,
            session_id,
        )


class SentryWatcher:
    """The tracer while Sentry is not initialised: at each run's start, a look at the client of
    Sentry's global scope (when sentry_sdk is not even imported, a dictionary lookup)."""

    __slots__ = ("_looked_at", "_scope")

    def __init__(self) -> None:
        self._scope: Scope | None = None
        self._looked_at: object = None  # the client last looked at

    def run_started(self, event: RunStarted) -> None:
        scope = self._scope
        if scope is None:
            scope = self._scope = _sentry.global_scope()
            if scope is None:
                return
        client = scope.client
        if client is self._looked_at:
            return
        self._looked_at = client
        if _sentry.sends(client):
            refresh()  # from their next step, runners record steps and report failures


class StepRecorder:
    """The tracer while Sentry is initialised: keeps each step's tasks for the breadcrumbs, and
    reports the failed attempts no handler of the plugin reported."""

    __slots__ = ()

    def run_started(self, event: RunStarted) -> None:
        start_step(event)

    def task_retrying(self, event: TaskRetrying) -> None:
        step = current_step()
        if step is None:
            return
        if not step.take_reported(event.task_id, event.attempt):
            _report_attempt(
                event.error,
                event.session_id,
                event.graph_id,
                event.task_id,
                event.attempt,
                step,
            )
        step.retrying(event)

    def task_ended(self, event: TaskEnded) -> None:
        step = current_step()
        if step is None:
            return
        error = event.error
        if (
            error is not None
            and isinstance(error, TaskExecutionFailed)
            and not step.take_reported(event.task_id, event.attempts)
        ):
            _report_attempt(
                error,
                event.session_id,
                event.graph_id,
                event.task_id,
                event.attempts,
                step,
            )
        step.ended(event)

    def run_ended(self, event: RunEnded) -> None:
        end_step()


class SentryHandler:
    """The error handler: reports a failure with the context's values when asked to, and routes
    it to a fallback task when configured to; otherwise it decides nothing."""

    __slots__ = ()

    def applies_to(self, task: Task) -> bool:
        settings = current()
        if settings.fallback_for(task.id) is not None:
            return True
        return bool(settings.send_context) and _sentry.initialised()

    def __call__(self, failure: TaskFailure) -> ErrorDecision | None:
        settings = current()
        if settings.send_context and _sentry.initialised():
            step = current_step()
            if step is not None:
                step.mark_reported(failure.task_id, failure.attempt)
            _report_attempt(
                failure.error,
                failure.session_id,
                failure.graph_id,
                failure.task_id,
                failure.attempt,
                step,
                failure.context,
                settings,
            )
        fallback = settings.fallback_for(failure.task_id)
        if fallback is None:
            return None
        return ErrorDecision.Route(NextAction.GoTo(fallback))

    def __repr__(self) -> str:
        return "<flowcore_sentry handler>"


def _context_values(ctx: Context, settings: Settings) -> dict[str, object] | None:
    """The values of ``ctx`` the application asked to send."""
    wanted = settings.send_context
    if wanted is True:
        return {key: ctx.get(key) for key in ctx.keys()}  # noqa: SIM118 (a Context, not a dict)
    if not wanted:
        return None
    return {key: ctx.get(key) for key in sorted(wanted) if key in ctx}


WATCHER = SentryWatcher()
RECORDER = StepRecorder()
HANDLER = SentryHandler()


def tracer() -> SentryWatcher | StepRecorder:
    """The tracer to register now: the recorder once Sentry is initialised."""
    return RECORDER if _sentry.initialised() else WATCHER


def handler_needed(settings: Settings) -> bool:
    """Whether the handler has anything to do: a registered handler, even one that applies to
    no task, moves every step off flowcore's fastest path."""
    return settings.route_to is not None or (bool(settings.send_context) and _sentry.initialised())


class _Refresh:
    """A plugin with no hooks: registering it makes flowcore collect every plugin's
    registrations again, and each runner resolves them anew at its next step."""


def refresh() -> None:
    """Make runners look again at what this plugin registers (from their next step)."""
    try:
        marker = _Refresh()
        flowcore.unregister_plugin(
            flowcore.register_plugin(marker, f"flowcore-sentry-refresh-{id(marker):x}")
        )
    except Exception:
        _log.exception("flowcore-sentry could not make the runners take its new settings")
