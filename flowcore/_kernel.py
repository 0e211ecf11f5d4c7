"""The synchronous heart of a step: pick the next task and apply a task's NextAction.

A hot-path module: plain typed Python, compiled by Cython where ``_kernel.pxd`` declares the
types. Nothing here awaits; ``_engine`` drives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcore._context import Context
from flowcore._errors import TaskExecutionFailed, TaskNotFound
from flowcore._session import HISTORY_LIMIT, Session
from flowcore._values import (
    CONTINUE,
    CONTINUE_AND_EXECUTE,
    END,
    GO_BACK,
    GO_TO,
    WAIT_FOR_INPUT,
    ExecutionStatus,
    Paused,
    TaskResult,
)

__all__ = ["Route", "apply_result", "find_next_task"]

Predicate = Callable[[Context], bool]
# Per source task: its conditional edges (predicate, yes_id) in the order added, and the first
# plain edge (a conditional edge's "no" branch counts as a plain edge).
Route = tuple[tuple[tuple[Predicate, str], ...], str | None]

REASON_CONTINUE = "Task completed, continuing to next task"
REASON_NO_EDGE = "No outgoing edge found from current task"
REASON_GOTO = "Task requested jump to specific task"
REASON_GOBACK = "Task requested to go back to previous task"

_COMPLETED: ExecutionStatus = ExecutionStatus.Completed
_WAITING: ExecutionStatus = ExecutionStatus.WaitingForInput


def find_next_task(routes: dict[str, Route], from_id: str, ctx: Context) -> str | None:
    """The task after ``from_id``: the first true conditional edge, else the first plain edge."""
    route = routes.get(from_id)
    if route is None:
        return None
    for predicate, yes_id in route[0]:
        try:
            taken = predicate(ctx)
        except Exception as exc:
            name = getattr(predicate, "__qualname__", type(predicate).__qualname__)
            raise TaskExecutionFailed(
                from_id, f"Task '{from_id}' failed: edge predicate {name} raised {exc!r}"
            ) from exc
        if taken:
            return yes_id
    return route[1]


def _leave(session: Session, task_id: str) -> None:
    history = session.history
    history.append(task_id)
    if len(history) > HISTORY_LIMIT:
        del history[: len(history) - HISTORY_LIMIT]


def apply_result(
    routes: dict[str, Route],
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
    if kind in (CONTINUE, CONTINUE_AND_EXECUTE):
        next_id = find_next_task(routes, task_id, session.context)
        if next_id is None:
            return Paused(task_id, REASON_NO_EDGE)
        if next_id != task_id:  # an edge back to the same task is no change: no history
            _leave(session, task_id)
            session.current_task_id = next_id
        if kind == CONTINUE:
            return Paused(next_id, REASON_CONTINUE)
        return None
    if kind == WAIT_FOR_INPUT:
        return _WAITING
    if kind == END:
        session.is_completed = True
        return _COMPLETED
    if kind == GO_TO:
        target: str = action._task_id  # type: ignore[assignment]
        if target not in tasks:
            raise TaskNotFound(
                target,
                f"Task '{task_id}' asked to go to task '{target}', which is not in the graph",
            )
        if target != task_id:
            _leave(session, task_id)
            session.current_task_id = target
        return Paused(target, REASON_GOTO)
    if kind == GO_BACK:
        history = session.history
        if not history:
            return _WAITING
        previous = history.pop()
        session.current_task_id = previous
        return Paused(previous, REASON_GOBACK)
    raise AssertionError(f"unknown NextAction kind {kind}")  # pragma: no cover
