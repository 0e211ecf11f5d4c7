"""Running a session's step: the task calls, timeouts, retries, error handling and the
ContinueAndExecute loop.

The async edge around ``_kernel``: it awaits tasks and storage, the kernel decides. A step with
no tracer and no error handler (``observers`` None) takes the plain path: no event is built and
no clock is read.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from contextvars import ContextVar
from datetime import datetime, timezone
from time import perf_counter
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from flowcore._codec import decode_context, encode_context
from flowcore._context import Context
from flowcore._errors import TaskExecutionFailed
from flowcore._handlers import ErrorDecision, Handler, Report, Retry, Route, TaskFailure, decide
from flowcore._kernel import StepRun, not_a_result, raise_task_failure
from flowcore._migrations import check_owner, migrate
from flowcore._observers import Observers
from flowcore._session import Session
from flowcore._task import RetryPolicy, Task
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

if TYPE_CHECKING:
    from flowcore._graph import Graph

__all__ = ["StepSink", "execute_session", "held", "run_child_task", "run_step", "run_task"]

_UTC = timezone.utc
_COMPLETED = ExecutionStatus.Completed


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


def _raise_timed_out(task_id: str, seconds: float) -> NoReturn:
    failure = TaskExecutionFailed.timed_out(task_id, seconds)
    raise failure from TimeoutError(str(failure))


async def _await_task(awaitable: Any, task_id: str, timeout: float | None) -> Any:
    """Await what an async task's run() returned, under ``timeout``; failures wrapped."""
    try:
        if timeout is None:
            return await awaitable
        return await await_with_timeout(awaitable, timeout)
    except DeadlineExceeded:
        _raise_timed_out(task_id, timeout)  # type: ignore[arg-type]
    except Exception as exc:
        raise_task_failure(task_id, exc)


async def _attempt(task: Task, task_id: str, ctx: Context, timeout: float | None) -> TaskResult:
    """One call of ``task.run(ctx)``, with its time limit and its failures wrapped."""
    own_timeout = task.timeout
    in_thread = own_timeout is not None and not inspect.iscoroutinefunction(task.run)
    if in_thread:
        # A plain def with its own timeout runs in a worker thread so the limit holds. A thread
        # cannot be stopped: past the limit it runs on, so it works on a copy of the context,
        # which becomes the session's only if the attempt ends in time. (An unstorable value
        # fails here, with SerializationError, as for a RetryPolicy's snapshot.)
        work = decode_context(encode_context(ctx))
    try:
        if in_thread:
            loop = asyncio.get_running_loop()
            # The thread sees this step's context variables (flowcore.emit finds its stream).
            call = contextvars.copy_context().run
            result: Any = await await_with_timeout(
                loop.run_in_executor(None, call, task.run, work),
                own_timeout,  # type: ignore[arg-type]
            )
            ctx._restore_from(work)
        else:
            result = task.run(ctx)
    except DeadlineExceeded:
        _raise_timed_out(task_id, own_timeout)  # type: ignore[arg-type]
    except Exception as exc:
        raise_task_failure(task_id, exc)
    if type(result) is not TaskResult and inspect.isawaitable(result):
        result = await _await_task(result, task_id, timeout)
    if not isinstance(result, TaskResult):
        raise not_a_result(task_id, result)
    return result


class _ObservedTask:
    """A task of a step run with tracers or error handlers, and what they are told about it."""

    __slots__ = (
        "attempts",
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
        self.failure: TaskExecutionFailed | None = None  # the failure a handler routed/reported

    async def decide(self, failure: TaskExecutionFailed) -> ErrorDecision:
        """Ask the error handlers what ``failure`` becomes (Raise when none decides)."""
        observers = self.observers
        session = self.session
        decided = await decide(
            self.handlers,
            TaskFailure(
                session.id,
                self.graph_id,
                self.task_id,
                self.task,
                failure,
                self.attempts,
                session.context,
            ),
        )
        if decided is None:
            return ErrorDecision.Raise
        handler, decision = decided
        if observers.error_handled:
            event = ErrorHandled(
                session.id, self.graph_id, self.task_id, self.attempts, failure, handler, decision
            )
            emit(observers.error_handled, event)
        return decision

    def retrying(self, failure: TaskExecutionFailed, delay: float) -> None:
        """Tell the tracers that the failed attempt is retried after ``delay`` seconds."""
        if self.observers.task_retrying:
            event = TaskRetrying(
                self.session.id, self.graph_id, self.task_id, self.attempts, failure, delay
            )
            emit(self.observers.task_retrying, event)


async def _attempts(
    task: Task,
    task_id: str,
    ctx: Context,
    timeout: float | None,
    policy: RetryPolicy | None,
    observed: _ObservedTask | None,
) -> TaskResult | ExecutionStatus:
    """Attempt the task until it succeeds or its failure is decided on.

    The task's RetryPolicy comes first; when it gives up, the error handlers (if any) decide.
    Returns the task's result (or the one a handler routed to), or the Error status of a
    reported failure. Each retry, route or report restores the context as it was before.
    """
    handled = observed is not None and bool(observed.handlers)
    snapshot = encode_context(ctx) if policy is not None or handled else b""
    attempt = 0
    while True:
        attempt += 1
        if observed is not None:
            observed.attempts = attempt
        try:
            return await _attempt(task, task_id, ctx, timeout)
        except TaskExecutionFailed as failure:
            cause = failure.__cause__
            if policy is not None and cause is not None and policy.should_retry(cause, attempt):
                delay = policy.delay(attempt)
            elif not handled or observed is None:
                raise
            else:
                decision = await observed.decide(failure)
                if isinstance(decision, Retry):
                    delay = decision.delay
                elif isinstance(decision, (Route, Report)):
                    ctx._restore_from(decode_context(snapshot))
                    observed.failure = failure
                    return _decided_outcome(decision, failure)
                else:
                    raise
            if observed is not None:
                observed.retrying(failure, delay)
        ctx._restore_from(decode_context(snapshot))
        await asyncio.sleep(delay)


def _decided_outcome(
    decision: Route | Report, failure: TaskExecutionFailed
) -> TaskResult | ExecutionStatus:
    """What a Route or Report decision makes of ``failure``."""
    if isinstance(decision, Route):
        message = decision.status_message
        return TaskResult(
            decision.response, decision.next_action, str(failure) if message is None else message
        )
    message = decision.message
    return ExecutionStatus.Error(str(failure) if message is None else message)


async def run_task(
    task: Task, task_id: str, ctx: Context, default_timeout: float | None
) -> TaskResult:
    """Run ``task`` on ``ctx`` under its timeout and retry policy.

    Every failure is raised as TaskExecutionFailed.
    """
    timeout = task.timeout if task.timeout is not None else default_timeout
    policy = task.retry
    if policy is None:
        return await _attempt(task, task_id, ctx, timeout)
    # With no handlers to route or report, the outcome is always a TaskResult.
    return await _attempts(task, task_id, ctx, timeout, policy, None)  # type: ignore[return-value]


class _TracedStep:
    """The tracers of the step a task runs in, for tasks that run tasks of their own."""

    __slots__ = ("graph_id", "observers", "session")

    def __init__(self, observers: Observers, graph_id: str, session: Session) -> None:
        self.observers = observers
        self.graph_id = graph_id
        self.session = session


_TRACED_STEP: ContextVar[_TracedStep | None] = ContextVar("flowcore_traced_step", default=None)


async def run_child_task(task: Task, ctx: Context) -> TaskResult:
    """Run ``task`` inside another task (a fan-out's child): under its own timeout and retry
    policy, and seen by the step's tracers when the step has task tracers."""
    traced = _TRACED_STEP.get()
    if traced is None or not traced.observers.traces_tasks:
        return await run_task(task, task.id, ctx, None)
    outcome = await _run_observed_task(
        traced.observers, (), traced.graph_id, traced.session, task, task.id, None
    )
    return outcome  # type: ignore[return-value]  # no handlers: never a reported status


async def _run_observed_task(
    observers: Observers,
    handlers: tuple[Handler, ...],
    graph_id: str,
    session: Session,
    task: Task,
    task_id: str,
    default_timeout: float | None,
) -> TaskResult | ExecutionStatus:
    """``run_task`` with the tracers told and the error handlers asked."""
    observed = _ObservedTask(observers, handlers, graph_id, session, task, task_id)
    timeout = task.timeout if task.timeout is not None else default_timeout
    ended = observers.task_ended
    started_at = perf_counter() if ended else 0.0
    if observers.task_started:
        emit(observers.task_started, TaskStarted(session.id, graph_id, task_id))
    policy = task.retry
    # Tasks that run tasks of their own (FanOutTask) find the step's tracers here.
    token = _TRACED_STEP.set(_TracedStep(observers, graph_id, session))
    try:
        if policy is None and not handlers:
            observed.attempts = 1
            outcome: TaskResult | ExecutionStatus = await _attempt(
                task, task_id, session.context, timeout
            )
        else:
            outcome = await _attempts(task, task_id, session.context, timeout, policy, observed)
    except BaseException as exc:
        if ended:
            duration = perf_counter() - started_at
            emit(
                ended,
                TaskEnded(session.id, graph_id, task_id, None, exc, duration, observed.attempts),
            )
        raise
    finally:
        _TRACED_STEP.reset(token)
    if ended:
        result = outcome if type(outcome) is TaskResult else None
        duration = perf_counter() - started_at
        event = TaskEnded(
            session.id, graph_id, task_id, result, observed.failure, duration, observed.attempts
        )
        emit(ended, event)
    return outcome


async def execute_session(
    graph: Graph,
    session: Session,
    observers: Observers | None = None,
    sink: StepSink | None = None,
) -> ExecutionResult:
    """Run the session's current task, and the chain after it, and move the session on; a
    completed session, or one waiting for a time still to come, runs nothing.

    With ``observers``, tracers see each task and error handlers decide on failures; a
    reported failure ends the step with its Error status and the failed task still current.
    With ``sink``, it is told of each task as it starts and ends.
    The result's ``version`` is left None: the session is not saved here. A session of another
    graph, or of a graph version it cannot be brought to, raises GraphError (see
    ``flowcore._migrations``); an older one is migrated first.
    """
    check_owner(graph, session)
    if session.is_completed or session.wake_at is not None:
        not_run = held(session)
        if not_run is not None:
            return not_run
    if session.graph_version != graph.version:
        migrate(graph, session)
    return await run_step(graph, session, observers, sink, None)


async def run_step(
    graph: Graph,
    session: Session,
    observers: Observers | None,
    sink: StepSink | None,
    version: int | None,
) -> ExecutionResult:
    """:func:`execute_session` for a session already found to be due to run (not completed,
    not waiting); ``version`` is the result's (what the session is saved as next)."""
    step = StepRun(graph.id, graph._tasks, graph._out_edges, graph.max_steps, session, version)
    if observers is not None:
        return await _execute_observed(graph, session, step, observers, sink)
    # The kernel runs plain tasks inline (telling the sink, if any, of each task's start and
    # end); the engine awaits async ones and takes the full path (own timeout, retries) for
    # the rest.
    if sink is not None:
        step.sink = sink
    default_timeout = graph.task_timeout
    while True:
        status = step.run_inline()
        if status is None:
            pending = step.pending
            if pending is not None:
                step.pending = None
                task = step.task
                timeout = default_timeout if task.timeout is None else task.timeout
                result = await _await_task(pending, step.task_id, timeout)
            else:
                result = await run_task(step.task, step.task_id, session.context, default_timeout)
            status = step.finish(result)
        if status is not None:
            return step.outcome(step.result.response, status)  # type: ignore[union-attr]


async def _execute_observed(
    graph: Graph,
    session: Session,
    step: StepRun,
    observers: Observers,
    sink: StepSink | None,
) -> ExecutionResult:
    """The step with tracers told about each task, error handlers asked about failures, and
    the sink told of each task's start and end."""
    ctx = session.context
    default_timeout = graph.task_timeout
    records = step.records
    while True:
        task = step.begin()
        task_id = step.task_id
        if sink is not None:
            sink.task_started(task_id)
        handlers = observers.handlers_for(task)
        if not (handlers or observers.traces_tasks):
            result = await run_task(task, task_id, ctx, default_timeout)
        else:
            outcome = await _run_observed_task(
                observers, handlers, graph.id, session, task, task_id, default_timeout
            )
            if type(outcome) is not TaskResult:  # a reported failure ends the step here
                message = outcome.message  # type: ignore[union-attr]
                session.status_message = message
                records.append(TaskRecord(task_id, None, message, None))
                if sink is not None:
                    sink.task_ended(records[-1])
                return step.outcome(None, outcome)  # type: ignore[arg-type]
            result = outcome
        status = step.finish(result)
        if sink is not None:
            sink.task_ended(records[-1])
        if status is not None:
            return step.outcome(result.response, status)
