"""Running a session's step: the task calls, timeouts, retries and the ContinueAndExecute loop.

The async edge around ``_kernel``: it awaits tasks and storage, the kernel decides.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from flowcore._codec import decode_context, encode_context
from flowcore._context import Context
from flowcore._errors import ExecutionLimitExceeded, TaskExecutionFailed, TaskNotFound
from flowcore._kernel import apply_result
from flowcore._session import Session
from flowcore._task import RetryPolicy, Task
from flowcore._timeout import DeadlineExceeded, await_with_timeout
from flowcore._values import ExecutionResult, ExecutionStatus, TaskResult

if TYPE_CHECKING:
    from flowcore._graph import Graph

__all__ = ["execute_session", "run_task"]

_COMPLETED_RESULT = ExecutionResult(None, ExecutionStatus.Completed)


def _not_a_result(task_id: str, value: object) -> TaskExecutionFailed:
    return TaskExecutionFailed(
        task_id,
        f"Task '{task_id}' failed: run() returned {type(value).__name__}, not a TaskResult "
        "(return TaskResult(...) or TaskResult.move_to_next())",
    )


async def _attempt(task: Task, task_id: str, ctx: Context, timeout: float | None) -> TaskResult:
    """One call of ``task.run(ctx)``, with its time limit and its failures wrapped."""
    try:
        if task.timeout is not None and not inspect.iscoroutinefunction(task.run):
            # A plain def with its own timeout runs in a worker thread so the limit holds.
            loop = asyncio.get_running_loop()
            result: Any = await await_with_timeout(
                loop.run_in_executor(None, task.run, ctx), task.timeout
            )
        else:
            result = task.run(ctx)
        if type(result) is not TaskResult and inspect.isawaitable(result):
            if timeout is None:
                result = await result
            else:
                result = await await_with_timeout(result, timeout)
    except DeadlineExceeded:
        seconds = task.timeout if task.timeout is not None else timeout
        failure = TaskExecutionFailed.timed_out(task_id, seconds)  # type: ignore[arg-type]
        raise failure from TimeoutError(str(failure))
    except Exception as exc:
        raise TaskExecutionFailed.failed(task_id, exc) from exc
    if not isinstance(result, TaskResult):
        raise _not_a_result(task_id, result)
    return result


async def _attempt_with_retries(
    task: Task, task_id: str, ctx: Context, timeout: float | None, policy: RetryPolicy
) -> TaskResult:
    snapshot = encode_context(ctx)
    failures = 0
    while True:
        try:
            return await _attempt(task, task_id, ctx, timeout)
        except TaskExecutionFailed as failure:
            failures += 1
            cause = failure.__cause__
            if cause is None or not policy.should_retry(cause, failures):
                raise
        ctx._restore_from(decode_context(snapshot))
        await asyncio.sleep(policy.delay(failures))


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
    return await _attempt_with_retries(task, task_id, ctx, timeout, policy)


async def execute_session(graph: Graph, session: Session) -> ExecutionResult:
    """Run the session's current task, and the chain after it, and move the session on."""
    if session.is_completed:
        return _COMPLETED_RESULT
    tasks = graph._tasks
    routes = graph._routes
    ctx = session.context
    max_steps = graph.max_steps
    default_timeout = graph.task_timeout
    ran = 0
    while True:
        task_id = session.current_task_id
        task = tasks.get(task_id)
        if task is None:
            raise TaskNotFound(
                task_id,
                f"Task '{task_id}' (the current task of session '{session.id}') "
                f"is not in graph '{graph.id}'",
            )
        if max_steps is not None and ran >= max_steps:
            raise ExecutionLimitExceeded(
                f"Session '{session.id}' ran {ran} tasks in one step, the limit of graph "
                f"'{graph.id}' (max_steps={max_steps}); a ContinueAndExecute chain probably "
                "loops: end it with Continue or WaitForInput, or raise max_steps"
            )
        ran += 1
        result = await run_task(task, task_id, ctx, default_timeout)
        status = apply_result(routes, tasks, session, task_id, result)
        if status is not None:
            return ExecutionResult(result.response, status)
