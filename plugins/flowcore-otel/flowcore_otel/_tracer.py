"""OpenTelemetryTracer: each step of a FlowRunner as a tree of OpenTelemetry spans, and metrics.

flowcore calls a tracer inline, in the asyncio task that runs the step: ``run_started`` and
``run_ended`` in the same task, and each task's events in the task (the fan-out child) that runs
it. So the ``flowcore.run`` span and each ``flowcore.task`` attempt are made the current span
(OpenTelemetry's context, attached and detached) while they last: spans the task's own code
opens, and a ``run()`` it calls, nest under them. The per-run and per-attempt state lives in
context variables of the tracer's own, for the same reason.
"""

from __future__ import annotations

import asyncio
import inspect
from contextvars import ContextVar, Token
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

from flowcore import (
    ErrorDecision,
    ErrorHandled,
    RunEnded,
    RunStarted,
    SessionConflict,
    SessionLoaded,
    SessionSaved,
    TaskEnded,
    TaskExecutionFailed,
    TaskRetrying,
    TaskStarted,
    Tracer,
)
from flowcore_otel._metrics import StepMetrics
from flowcore_otel._names import (
    ATTEMPT,
    BLOB_SIZE,
    DECISION,
    ERROR_HANDLED,
    GRAPH_ID,
    HANDLER,
    LOAD,
    OUTCOME,
    RUN,
    SAVE,
    SCOPE,
    SESSION_ID,
    STATUS,
    TASK,
    TASK_ID,
    VERSION,
)

__all__ = ["OpenTelemetryTracer"]

_VERSION = "0.1.0"


class _Run:
    """A run being traced; ``span`` is None when it is not recorded (no SDK, or sampled out)."""

    __slots__ = ("context_token", "session_id", "span", "start_ns", "token")

    def __init__(self, session_id: str, start_ns: int) -> None:
        self.session_id = session_id
        self.start_ns = start_ns
        self.span: Span | None = None
        self.context_token: Token[Context] | None = None
        self.token: Token[_Run | None] | None = None


class _Attempt:
    """A task being traced: the span of its current attempt, current while the attempt runs.

    ``parent`` is the context every attempt of the task starts in: its run's span, or the span
    of the task that runs it (a fan-out's).
    """

    __slots__ = ("context_token", "parent", "run", "span", "start_ns", "token")

    def __init__(self, run: _Run, parent: Context) -> None:
        self.run = run
        self.parent = parent
        self.span: Span = trace.INVALID_SPAN
        self.start_ns = 0
        self.context_token: Token[Context] | None = None
        self.token: Token[_Attempt | None] | None = None

    def begin(self, span: Span, start_ns: int) -> None:
        """Make ``span`` the current attempt's, and the current span."""
        self.span = span
        self.start_ns = start_ns
        self.context_token = otel_context.attach(trace.set_span_in_context(span))

    def end(self, outcome: str, now: int) -> None:
        """End the attempt's span with ``outcome``; the span before it is current again."""
        try:
            self.span.set_attribute(OUTCOME, outcome)
            self.span.end(max(now, self.start_ns))
        finally:
            if self.context_token is not None:
                otel_context.detach(self.context_token)
                self.context_token = None


class OpenTelemetryTracer(Tracer):
    """A flowcore tracer that reports each step as OpenTelemetry spans and metrics.

    Spans: ``flowcore.run`` for each ``FlowRunner.run`` (and ``stream``), nested under the span
    current when it is called; under it ``flowcore.load``, one ``flowcore.task`` per attempt of
    each task, and ``flowcore.save``. Metrics: ``flowcore.step.duration`` (a histogram, in
    seconds), ``flowcore.steps``, ``flowcore.conflicts`` and ``flowcore.task.failures``.

    It uses the OpenTelemetry API only; the application sets up the SDK and its exporters.
    ``tracer_provider`` and ``meter_provider`` default to the global ones (those set with
    ``opentelemetry.trace.set_tracer_provider`` and ``opentelemetry.metrics.set_meter_provider``,
    before or after this tracer is made); with no SDK behind them, it records nothing.

    Installed, flowcore-otel registers one for every FlowRunner, once the application has set
    up an SDK (until then it waits, at next to no cost). Make one yourself to give a runner
    providers of its own: ``FlowRunner(graph, storage, tracers=[OpenTelemetryTracer(...)])``.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        _check_provider("tracer_provider", tracer_provider, TracerProvider, _TRACER_HINT)
        _check_provider("meter_provider", meter_provider, MeterProvider, _METER_HINT)
        self._tracer = trace.get_tracer(SCOPE, _VERSION, tracer_provider)
        self._metrics = StepMetrics(metrics.get_meter(SCOPE, _VERSION, meter_provider))
        # Per tracer, so that two tracers (the plugin's and a runner's own) never mix their runs.
        self._run: ContextVar[_Run | None] = ContextVar(f"flowcore_otel_run_{id(self):x}")
        self._attempt: ContextVar[_Attempt | None] = ContextVar(
            f"flowcore_otel_attempt_{id(self):x}"
        )
        # The last error handler's decision on a failure of the task running in this context.
        self._decision: ContextVar[object] = ContextVar(f"flowcore_otel_decision_{id(self):x}")

    # -- the run -------------------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        start = time_ns()
        span = self._tracer.start_span(
            RUN,
            attributes={SESSION_ID: event.session_id, GRAPH_ID: event.graph_id},
            start_time=start,
        )
        run = _Run(event.session_id, start)
        if span.is_recording():
            run.span = span
            run.context_token = otel_context.attach(trace.set_span_in_context(span))
        run.token = self._run.set(run)

    def run_ended(self, event: RunEnded) -> None:
        error = event.error
        status = event.status
        self._metrics.step(
            event.graph_id, status, event.duration, isinstance(error, SessionConflict)
        )
        run = self._run.get(None)
        if run is None or run.token is None:
            return
        try:
            span = run.span
            if span is None:
                return
            span.set_attribute(STATUS, status)
            result = event.result
            if result is not None:
                version = result.version
                if version is not None:
                    span.set_attribute(VERSION, version)
                if status == "Error":  # an error handler reported a task's failure
                    message = getattr(result.status, "message", None)
                    span.set_status(Status(StatusCode.ERROR, message))
            elif error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, _describe_error(error)))
            span.end(max(time_ns(), run.start_ns))
        finally:
            if run.context_token is not None:
                otel_context.detach(run.context_token)
            self._run.reset(run.token)
            run.token = None

    # -- load and save -------------------------------------------------------------------------

    def session_loaded(self, event: SessionLoaded) -> None:
        run = self._run.get(None)
        if run is None or run.span is None:
            return
        run.span.set_attribute(TASK_ID, event.task_id)  # the task the step starts at
        self._storage_span(LOAD, event, run.span, run.start_ns)

    def session_saved(self, event: SessionSaved) -> None:
        run = self._run.get(None)
        if run is None or run.session_id != event.session_id:
            self._storage_span(SAVE, event, None, 0)  # create_session's
        elif run.span is not None:
            self._storage_span(SAVE, event, run.span, run.start_ns)

    def _storage_span(
        self, name: str, event: SessionLoaded | SessionSaved, run_span: Span | None, not_before: int
    ) -> None:
        """A span of the storage call that just ended, ``event.duration`` seconds long, under
        the run's span; with no run, under the current span, naming the session."""
        end = time_ns()
        # The duration is measured on another clock: keep the span inside its run.
        start = max(end - _ns(event.duration), not_before)
        attributes: dict[str, str | int] = {BLOB_SIZE: event.blob_size}
        parent = None
        if run_span is None:
            attributes[SESSION_ID] = event.session_id
            attributes[GRAPH_ID] = event.graph_id
        else:
            parent = trace.set_span_in_context(run_span)
        span = self._tracer.start_span(
            name, context=parent, attributes=attributes, start_time=start
        )
        span.end(end)

    # -- tasks ---------------------------------------------------------------------------------

    def task_started(self, event: TaskStarted) -> None:
        run = self._run.get(None)
        if run is None or run.span is None:
            return
        outer = self._attempt.get(None)  # the fan-out this task is a child of, if any
        parent: Span = outer.span if outer is not None and outer.run is run else run.span
        attempt = _Attempt(run, trace.set_span_in_context(parent))
        self._begin_attempt(attempt, event.task_id, 1, time_ns())
        attempt.token = self._attempt.set(attempt)

    def _begin_attempt(self, attempt: _Attempt, task_id: str, number: int, start: int) -> None:
        span = self._tracer.start_span(
            TASK,
            context=attempt.parent,
            attributes={TASK_ID: task_id, ATTEMPT: number},
            start_time=start,
        )
        attempt.begin(span, start)

    def task_retrying(self, event: TaskRetrying) -> None:
        self._decision.set(None)  # a decision, if any, was Retry: this failure is not the last
        self._metrics.task_failed(event.graph_id, event.task_id, "retried")
        attempt = self._traced_attempt()
        if attempt is None:
            return
        now = time_ns()
        _record_failure(attempt.span, event.error)
        attempt.end("retried", now)
        # The next attempt, current from now on, starts once the retry's delay is over.
        self._begin_attempt(attempt, event.task_id, event.attempt + 1, now + _ns(event.delay))

    def error_handled(self, event: ErrorHandled) -> None:
        self._decision.set(event.decision)
        attempt = self._traced_attempt()
        if attempt is None:
            return
        attempt.span.add_event(
            ERROR_HANDLED,
            {HANDLER: _name_of(event.handler), DECISION: repr(event.decision)},
        )

    def task_ended(self, event: TaskEnded) -> None:
        error = event.error
        if error is None:
            outcome = event.status  # the next action: "Continue", "GoTo(review)"...
        elif isinstance(error, asyncio.CancelledError):
            outcome = "cancelled"
        else:
            outcome = self._failure_outcome(event)
            self._metrics.task_failed(event.graph_id, event.task_id, outcome)
        attempt = self._traced_attempt()
        if attempt is None or attempt.token is None:
            return
        try:
            if error is not None:
                _record_failure(attempt.span, error)
            attempt.end(outcome, time_ns())
        finally:
            self._attempt.reset(attempt.token)
            attempt.token = None

    def _failure_outcome(self, event: TaskEnded) -> str:
        """What became of a task's last failed attempt: routed, reported or failed (raised)."""
        decision = self._decision.get(None)
        self._decision.set(None)
        if event.result is not None:
            return "routed"  # an error handler turned the failure into a result
        if isinstance(decision, ErrorDecision.Report):
            return "reported"
        return "failed"

    def _traced_attempt(self) -> _Attempt | None:
        """The attempt being traced in this context, or None when the run is not recorded."""
        run = self._run.get(None)
        if run is None or run.span is None:
            return None
        attempt = self._attempt.get(None)
        return attempt if attempt is not None and attempt.run is run else None

    def __repr__(self) -> str:
        return f"<OpenTelemetryTracer tracer={self._tracer!r}>"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _record_failure(span: Span, error: BaseException) -> None:
    """The failure as an exception event (what the task raised), and the span's error status."""
    cause = error.__cause__ if isinstance(error, TaskExecutionFailed) else None
    span.record_exception(cause if cause is not None else error)
    span.set_status(Status(StatusCode.ERROR, _describe_error(error)))


def _describe_error(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__


def _name_of(handler: object) -> str:
    """A handler's name for the event: its function's or its class's qualified name."""
    if inspect.isfunction(handler) or inspect.ismethod(handler):
        return f"{handler.__module__}.{handler.__qualname__}"
    cls = type(handler)
    return f"{cls.__module__}.{cls.__qualname__}"


_TRACER_HINT = (
    "an opentelemetry.trace.TracerProvider, such as opentelemetry.sdk.trace.TracerProvider(); "
    "leave it out to use the global one (opentelemetry.trace.set_tracer_provider)"
)
_METER_HINT = (
    "an opentelemetry.metrics.MeterProvider, such as opentelemetry.sdk.metrics.MeterProvider(); "
    "leave it out to use the global one (opentelemetry.metrics.set_meter_provider)"
)


def _check_provider(name: str, provider: Any, kind: type, hint: str) -> None:
    if provider is not None and not isinstance(provider, kind):
        raise TypeError(
            f"OpenTelemetryTracer({name}=...) takes {hint}; got {type(provider).__name__}: "
            f"{provider!r}"
        )
