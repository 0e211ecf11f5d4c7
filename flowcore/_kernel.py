"""The synchronous heart of a step: pick the next task and apply a task's NextAction.

A hot-path module: plain typed Python, compiled by Cython where ``_kernel.pxd`` declares the
types. Nothing here awaits; ``_engine`` drives it.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import isawaitable
from typing import Any, NoReturn

from flowcore._context import Context
from flowcore._errors import (
    ExecutionLimitExceeded,
    TaskExecutionFailed,
    TaskNotFound,
    quote_id,
)
from flowcore._session import HISTORY_LIMIT, Session
from flowcore._values import (
    CONTINUE,
    CONTINUE_AND_EXECUTE,
    END,
    GO_BACK,
    GO_TO,
    WAIT_FOR_INPUT,
    WAIT_UNTIL,
    ExecutionResult,
    ExecutionStatus,
    TaskRecord,
    TaskResult,
    paused,
    scheduled,
    step_result,
    task_record,
    wake_time,
)

__all__ = [
    "OutEdges",
    "StepRun",
    "apply_result",
    "call_task",
    "find_next_task",
    "not_a_result",
    "raise_task_failure",
]

Predicate = Callable[[Context], bool]
# The edges out of one task: its conditional edges (predicate, yes_id) in the order added, and
# the first plain edge (a conditional edge's "no" branch counts as a plain edge).
OutEdges = tuple[tuple[tuple[Predicate, str], ...], str | None]

REASON_CONTINUE = "Task completed, continuing to next task"
REASON_NO_EDGE = "No outgoing edge found from current task"
REASON_GOTO = "Task requested jump to specific task"
REASON_GOBACK = "Task requested to go back to previous task"

_COMPLETED: ExecutionStatus = ExecutionStatus.Completed
_WAITING: ExecutionStatus = ExecutionStatus.WaitingForInput


def find_next_task(out_edges: dict[str, OutEdges], from_id: str, ctx: Context) -> str | None:
    """The task after ``from_id``: the first true conditional edge, else the first plain edge."""
    edges = out_edges.get(from_id)
    if edges is None:
        return None
    for predicate, yes_id in edges[0]:
        try:
            taken = predicate(ctx)
        except Exception as exc:
            name = getattr(predicate, "__qualname__", type(predicate).__qualname__)
            raise TaskExecutionFailed(
                from_id, f"Task '{from_id}' failed: edge predicate {name} raised {exc!r}"
            ) from exc
        if taken:
            return yes_id
    return edges[1]


def _leave(session: Session, task_id: str) -> None:
    history = session.history
    history.append(task_id)
    if len(history) > HISTORY_LIMIT:
        del history[: len(history) - HISTORY_LIMIT]


def apply_result(
    out_edges: dict[str, OutEdges],
    tasks: dict[str, Any],
    session: Session,
    task_id: str,
    result: TaskResult,
) -> ExecutionStatus | None:
    """Record ``result`` of task ``task_id`` on ``session`` and move it on.

    Returns the step's status, or None when the next task is to run now (ContinueAndExecute).
    """
    result.task_id = task_id
    session.status_message = result.status_message
    action = result._next_action
    kind = action._kind
    if kind in (CONTINUE, CONTINUE_AND_EXECUTE, WAIT_UNTIL):
        next_id = find_next_task(out_edges, task_id, session.context)
        if next_id is None:
            return paused(task_id, REASON_NO_EDGE)
        if next_id != task_id:  # an edge back to the same task is no change: no history
            _leave(session, task_id)
            session.current_task_id = next_id
        if kind == CONTINUE:
            return paused(next_id, REASON_CONTINUE)
        if kind == WAIT_UNTIL:
            wake_at = wake_time(action)
            session.wake_at = wake_at
            return scheduled(next_id, wake_at)
        return None
    if kind == WAIT_FOR_INPUT:
        return _WAITING
    if kind == END:
        session.is_completed = True
        return _COMPLETED
    if kind == GO_TO:
        target: str = action._task_id
        if target not in tasks:
            raise TaskNotFound(
                target,
                f"Task '{task_id}' asked to go to task '{target}', which is not in the graph",
            )
        if target != task_id:
            _leave(session, task_id)
            session.current_task_id = target
        return paused(target, REASON_GOTO)
    if kind == GO_BACK:
        history = session.history
        if not history:
            return _WAITING
        previous = history.pop()
        session.current_task_id = previous
        return paused(previous, REASON_GOBACK)
    raise AssertionError(f"unknown NextAction kind {kind}")  # pragma: no cover


def call_task(run: Callable[[Context], object], task_id: str, ctx: Context) -> object:
    """``run(ctx)`` (a task's run, or what runs in its place), an exception raised as the
    failure of task ``task_id``: the one place a task is called."""
    try:
        return run(ctx)
    except Exception as exc:
        raise_task_failure(task_id, exc)


def raise_task_failure(task_id: str, exc: Exception) -> NoReturn:
    """Raise ``exc`` as the failure of task ``task_id``: wrapped in TaskExecutionFailed, or as
    it is when it already is that task's failure (a FanOutTask names its failed child so)."""
    if type(exc) is TaskExecutionFailed and exc.task_id == task_id:
        raise exc
    raise TaskExecutionFailed.failed(task_id, exc) from exc


def not_a_result(task_id: str, value: object) -> TaskExecutionFailed:
    """The failure of a task whose run() returned something other than a TaskResult."""
    return TaskExecutionFailed(
        task_id,
        f"Task '{task_id}' failed: run() returned {type(value).__name__}, not a TaskResult "
        "(return TaskResult(...) or TaskResult.move_to_next())",
    )


class StepRun:
    """One step in progress: the tasks it runs inline, and where the engine must take over.

    A graph starts it (``Graph._start_step``). :meth:`run_inline` calls plain tasks one after
    another and applies their results, the way a ContinueAndExecute chain runs, until the step
    ends (it returns the status) or a task needs the event loop: an async task's awaitable is
    left in ``pending``; a task with its own timeout or retry policy, or any task while
    ``inline`` is off (tracers or error handlers must see it), is left for the engine's full path
    (``pending`` None). The engine then hands the task's result to :meth:`finish` and calls
    :meth:`run_inline` again.
    """

    __slots__ = (
        "ctx",
        "graph_id",
        "inline",
        "max_steps",
        "out_edges",
        "pending",
        "ran",
        "records",
        "response",
        "session",
        "sink",
        "task",
        "task_id",
        "task_timeout",
        "tasks",
        "version",
    )

    def __init__(
        self,
        graph_id: str,
        tasks: dict[str, Any],
        out_edges: dict[str, OutEdges],
        max_steps: int | None,
        task_timeout: float | None,
        session: Session,
        version: int | None = None,
    ) -> None:
        self.graph_id = graph_id
        self.tasks = tasks
        self.out_edges = out_edges
        self.max_steps = max_steps
        self.task_timeout = task_timeout  # the graph's, for a task without a timeout of its own
        self.session = session
        self.ctx = session.context
        self.ran = 0
        self.task: Any = None
        self.task_id = ""
        self.pending: Any = None
        self.response: str | None = None  # of the task that ended the step
        self.records: list[TaskRecord] = []  # one per task applied, in order
        self.sink: Any = None  # told of each task's start and end (FlowRunner.stream), or None
        self.version = version  # the version the result reports (None: not saved by a runner)
        self.inline = True  # False: every task is left to the engine

    def begin(self) -> Any:
        """The session's current task, counted against ``max_steps``."""
        session = self.session
        task_id = session.current_task_id
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFound(
                task_id,
                f"Task '{task_id}' (the current task of session {quote_id(session.id)}) "
                f"is not in graph '{self.graph_id}'",
            )
        max_steps = self.max_steps
        if max_steps is not None and self.ran >= max_steps:
            raise ExecutionLimitExceeded(
                f"Session {quote_id(session.id)} ran {self.ran} tasks in one step, the limit of "
                f"graph '{self.graph_id}' (max_steps={max_steps}); a ContinueAndExecute chain "
                "probably loops: end it with Continue or WaitForInput, or raise max_steps"
            )
        self.ran += 1
        self.task = task
        self.task_id = task_id
        return task

    def run_inline(self) -> ExecutionStatus | None:
        """Run tasks until the step ends (its status) or the engine must take over (None)."""
        ctx = self.ctx
        sink = self.sink
        while True:
            task = self.begin()
            if sink is not None:
                sink.task_started(self.task_id)
            if not self.inline or task.retry is not None or task.timeout is not None:
                self.pending = None
                return None
            result = call_task(task.run, self.task_id, ctx)
            if not isinstance(result, TaskResult) and isawaitable(result):
                self.pending = result
                return None
            status = self.finish(result)
            if status is not None:
                return status

    def finish(self, result: object) -> ExecutionStatus | None:
        """Apply the result of the current task; the step's status, or None to go on."""
        if not isinstance(result, TaskResult):
            raise not_a_result(self.task_id, result)
        record = task_record(self.task_id, result)
        self.records.append(record)
        status = apply_result(self.out_edges, self.tasks, self.session, self.task_id, result)
        if self.sink is not None:
            self.sink.task_ended(record)
        if status is not None:
            self.response = result.response
        return status

    def report(self, message: str) -> ExecutionResult:
        """End the step on the current task's failure, which an error handler reported: the
        task stays current, ``message`` is the session's status message and the step's Error."""
        self.session.status_message = message
        record = TaskRecord(self.task_id, None, message, None)
        self.records.append(record)
        if self.sink is not None:
            self.sink.task_ended(record)
        return self.outcome(None, ExecutionStatus.Error(message))

    def outcome(self, response: str | None, status: ExecutionStatus) -> ExecutionResult:
        """The step's result: ``response`` and ``status``, and the story of the step."""
        session = self.session
        return step_result(
            response,
            status,
            session.id,
            self.version,
            session.current_task_id,
            tuple(self.records),
            False,
        )
