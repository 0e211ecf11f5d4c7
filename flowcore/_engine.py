"""Running a step: the task calls, timeouts, retries, error handling and the ContinueAndExecute
loop.

The async edge around ``_kernel``: a graph starts the step (``Graph._start_step``), the kernel
runs plain tasks inline and decides what comes next, and :func:`run_step` awaits the rest: an
async task's awaitable, or the full path (own timeout, retry policy, tracers, error handlers).
A step with no tracer and no error handler builds no event and reads no clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from functools import partial
from time import perf_counter
from typing import Any, Protocol

from flowcore._codec import decode_context, encode_context
from flowcore._context import Context
from flowcore._errors import TaskExecutionFailed
from flowcore._handlers import ErrorDecision, Handler, Report, Retry, Route, TaskFailure, decide
from flowcore._kernel import StepRun, call_task, not_a_result, raise_task_failure
from flowcore._observers import Observers
from flowcore._session import Session
from flowcore._task import ParentTask, Task
from flowcore._timeout import DeadlineExceeded, await_with_timeout
from flowcore._tracing import ErrorHandled, TaskEnded, TaskRetrying, TaskStarted, emit
from flowcore._values import (
    ExecutionResult,
    ExecutionStatus,
    TaskRecord,
    TaskResult,
    scheduled,
    step_result,
)

__all__ = ["StepSink", "held", "run_child", "run_step", "time_limit"]

_UTC = timezone.utc
_COMPLETED = ExecutionStatus.Completed

# What is called for a task: its run, or (a parent seen by tracers) its _run_children.
_Call = Callable[[Context], object]


class StepSink(Protocol):
    """Told about each task of a step as it starts and ends (what ``FlowRunner.stream`` yields)."""

    def task_started(self, task_id: str) -> None: ...

    def task_ended(self, record: TaskRecord) -> None: ...


def held(session: Session) -> ExecutionResult | None:
    """The result of a step that must not run: the session is completed, or waits for a time
    still to come. None when the step runs; a session that was waiting and is now due is
    cleared of its ``wake_at`` then."""
    if session.is_completed:
        return step_result(
            None, _COMPLETED, session.id, session.version, session.current_task_id, (), False
        )
    wake_at = session.wake_at
    if wake_at is not None:
        if wake_at > datetime.now(_UTC):
            status = scheduled(session.current_task_id, wake_at)
            return step_result(
                None, status, session.id, session.version, session.current_task_id, (), False
            )
        session.wake_at = None
    return None


def time_limit(task: Task, default: float | None) -> float | None:
    """How long an attempt of ``task`` may take: its own timeout, else ``default`` (the graph's
    for a task of the step; None for a fan-out's child, which its parent's limit covers)."""
    own = task.timeout
    return default if own is None else own


class _Reported(Exception):
    """Internal: an error handler reported the failure of the step's task, which ends the step
    with ``ExecutionStatus.Error(message)``."""

    def __init__(self, failure: TaskExecutionFailed, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


async def _settle(awaitable: Awaitable[Any], task_id: str, timeout: float | None) -> Any:
    """Await what a task's run() returned (or its worker thread) under ``timeout``; a failure
    raised as the task's TaskExecutionFailed."""
    try:
        if timeout is None:
            return await awaitable
        return await await_with_timeout(awaitable, timeout)
    except DeadlineExceeded as late:
        failure = TaskExecutionFailed.timed_out(task_id, late.seconds)
        raise failure from TimeoutError(str(failure))
    except Exception as exc:
        raise_task_failure(task_id, exc)


async def _attempt(
    task: Task, task_id: str, ctx: Context, timeout: float | None, call: _Call
) -> TaskResult:
    """One attempt of the task, ``call(ctx)``, under ``timeout``; a failure raised as the task's."""
    if task.timeout is not None and not inspect.iscoroutinefunction(task.run):
        # A plain def with its own timeout runs in a worker thread so the limit holds. A thread
        # cannot be stopped: past the limit it runs on, so it works on a copy of the context,
        # which becomes the session's only if the attempt ends in time. (An unstorable value
        # fails here, with SerializationError, as for a RetryPolicy's snapshot.)
        work = decode_context(encode_context(ctx))
        # The thread sees this step's context variables (flowcore.emit finds its stream).
        in_step = contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        thread = loop.run_in_executor(None, in_step, call_task, call, task_id, work)
        result = await _settle(thread, task_id, timeout)
        ctx._restore_from(work)
    else:
        result = call_task(call, task_id, ctx)
    if type(result) is not TaskResult and inspect.isawaitable(result):
        result = await _settle(result, task_id, timeout)
    if not isinstance(result, TaskResult):
        raise not_a_result(task_id, result)
    return result


async def _attempts(
    task: Task,
    task_id: str,
    ctx: Context,
    timeout: float | None,
    call: _Call,
    observed: _ObservedTask | None,
) -> TaskResult:
    """Attempt the task until it succeeds or its failure is decided on.

    The task's RetryPolicy comes first; when it gives up, the error handlers (``observed``'s)
    decide. Returns the task's result, or the one a handler routed the failure to; a failure a
    handler reported raises _Reported. Each retry, route or report restores the context as it
    was before the first attempt.
    """
    policy = task.retry
    handlers = () if observed is None else observed.handlers
    if policy is None and not handlers:
        if observed is not None:
            observed.attempts = 1
        return await _attempt(task, task_id, ctx, timeout, call)
    snapshot = encode_context(ctx)
    attempt = 0
    while True:
        attempt += 1
        if observed is not None:
            observed.attempts = attempt
        try:
            return await _attempt(task, task_id, ctx, timeout, call)
        except TaskExecutionFailed as failure:
            cause = failure.__cause__
            if policy is not None and cause is not None and policy.should_retry(cause, attempt):
                delay = policy.delay(attempt)
            elif observed is None or not handlers:
                raise
            else:
                decision = await observed.decide(failure)
                if not isinstance(decision, (Retry, Route, Report)):
                    raise  # ErrorDecision.Raise, or no decision
                if not isinstance(decision, Retry):
                    ctx._restore_from(decode_context(snapshot))
                    return observed.decided(decision, failure)
                delay = decision.delay
            if observed is not None:
                observed.retrying(failure, delay)
        ctx._restore_from(decode_context(snapshot))
        await asyncio.sleep(delay)


async def run_child(task: Task, ctx: Context) -> TaskResult:
    """Run ``task`` inside another task (a fan-out's child), seen by no tracer: under its own
    timeout (else its parent's limit covers it) and its retry policy."""
    return await _attempts(task, task.id, ctx, time_limit(task, None), task.run, None)


class _ObservedTask:
    """A task that tracers see and error handlers decide on, and what they are told of it."""

    __slots__ = (
        "attempts",
        "call",
        "failure",
        "graph_id",
        "handlers",
        "observers",
        "session",
        "task",
        "task_id",
    )

    def __init__(
        self,
        observers: Observers,
        handlers: tuple[Handler, ...],
        graph_id: str,
        session: Session,
        task: Task,
        task_id: str,
    ) -> None:
        self.observers = observers
        self.handlers = handlers
        self.graph_id = graph_id
        self.session = session
        self.task = task
        self.task_id = task_id
        self.attempts = 0
        self.failure: TaskExecutionFailed | None = None  # the failure a handler routed
        self.call: _Call = task.run
        if observers.traces_tasks and isinstance(task, ParentTask):
            # The children are seen by the same tracers: the parent is handed their runner.
            self.call = partial(task._run_children, run_child=self.run_child)

    async def run(self, ctx: Context, timeout: float | None) -> TaskResult:
        """Attempt the task (:func:`_attempts`), the tracers told of its start and end."""
        observers = self.observers
        ended = observers.task_ended
        started_at = perf_counter() if ended else 0.0
        if observers.task_started:
            emit(observers.task_started, TaskStarted(self.session.id, self.graph_id, self.task_id))
        try:
            result = await _attempts(self.task, self.task_id, ctx, timeout, self.call, self)
        except _Reported as reported:
            if ended:
                self._ended(None, reported.failure, started_at)
            raise
        except BaseException as exc:
            if ended:
                self._ended(None, exc, started_at)
            raise
        if ended:
            self._ended(result, self.failure, started_at)
        return result

    async def run_child(self, child: Task, ctx: Context) -> TaskResult:
        """Run a child of this task (a fan-out's), seen by the same tracers."""
        observed = _ObservedTask(self.observers, (), self.graph_id, self.session, child, child.id)
        return await observed.run(ctx, time_limit(child, None))

    async def decide(self, failure: TaskExecutionFailed) -> ErrorDecision | None:
        """Ask the error handlers what ``failure`` becomes (None when none decides), and tell
        the tracers what was decided."""
        session = self.session
        found = TaskFailure(
            session.id,
            self.graph_id,
            self.task_id,
            self.task,
            failure,
            self.attempts,
            session.context,
        )
        decided = await decide(self.handlers, found)
        if decided is None:
            return None
        handler, decision = decided
        if self.observers.error_handled:
            event = ErrorHandled(
                session.id, self.graph_id, self.task_id, self.attempts, failure, handler, decision
            )
            emit(self.observers.error_handled, event)
        return decision

    def decided(self, decision: Route | Report, failure: TaskExecutionFailed) -> TaskResult:
        """The result a Route decision makes of ``failure``; a Report raises _Reported."""
        if isinstance(decision, Report):
            message = decision.message
            raise _Reported(failure, str(failure) if message is None else message)
        self.failure = failure
        message = decision.status_message
        return TaskResult(
            decision.response, decision.next_action, str(failure) if message is None else message
        )

    def retrying(self, failure: TaskExecutionFailed, delay: float) -> None:
        """Tell the tracers that the failed attempt is retried after ``delay`` seconds."""
        if self.observers.task_retrying:
            event = TaskRetrying(
                self.session.id, self.graph_id, self.task_id, self.attempts, failure, delay
            )
            emit(self.observers.task_retrying, event)

    def _ended(self, result: TaskResult | None, error: BaseException | None, since: float) -> None:
        event = TaskEnded(
            self.session.id,
            self.graph_id,
            self.task_id,
            result,
            error,
            perf_counter() - since,
            self.attempts,
        )
        emit(self.observers.task_ended, event)


async def run_step(step: StepRun, observers: Observers, sink: StepSink | None) -> ExecutionResult:
    """Run the step a graph started: the session's current task, and the chain after it.

    Tracers see each task and error handlers decide on its failures when ``observers`` has any
    for tasks (``observes_tasks``); a reported failure ends the step with its Error status and
    the failed task still current. With ``sink``, it is told of each task as it starts and ends.
    """
    if sink is not None:
        step.sink = sink
    observed = observers.observes_tasks
    if observed:
        step.inline = False  # every task goes by the engine, to be seen
    while True:
        status = step.run_inline()
        if status is None:
            task = step.task
            timeout = time_limit(task, step.task_timeout)
            pending = step.pending
            if pending is not None:
                step.pending = None
                result = await _settle(pending, step.task_id, timeout)
            elif not observed:
                result = await _attempts(task, step.task_id, step.ctx, timeout, task.run, None)
            else:
                handlers = observers.handlers_for(task)
                watched = _ObservedTask(
                    observers, handlers, step.graph_id, step.session, task, step.task_id
                )
                try:
                    result = await watched.run(step.ctx, timeout)
                except _Reported as reported:
                    return step.report(reported.message)
            status = step.finish(result)
        if status is not None:
            return step.outcome(step.response, status)
