"""FanOutTask: run several tasks on one context and wait for all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from flowcore import _engine
from flowcore._context import Context
from flowcore._errors import TaskExecutionFailed, quote_id
from flowcore._task import ChildRunner, ParentTask, Task
from flowcore._values import NextAction, TaskResult

__all__ = ["FanOutTask"]


class FanOutTask(ParentTask):
    """Run ``children`` on the session's own context, then go on with ``next_action``.

    Async children run concurrently, plain ``def`` children one after another. For each child
    the fan-out writes ``<prefix>.<child_id>.response`` (when not None),
    ``<prefix>.<child_id>.status`` (when the child gave a status message) and
    ``<prefix>.<child_id>.next_action`` (e.g. ``"End"`` or ``"GoTo(x)"``). A child that fails
    fails the fan-out, naming the first failed child. The fan-out's own timeout covers all of
    its children (``timeout``, else the graph's); a child's own ``timeout`` and ``retry`` apply
    to that child as well.
    """

    def __init__(
        self,
        id: str,
        children: Iterable[Task],
        *,
        prefix: str = "fanout",
        next_action: NextAction = NextAction.Continue,
        timeout: float | None = None,
    ) -> None:
        if type(id) is not str or not id:
            raise TypeError(f"FanOutTask id must be a non-empty str, got {id!r}")
        kids = tuple(children)
        seen: set[str] = set()
        for child in kids:
            if not isinstance(child, Task):
                raise TypeError(
                    f"FanOutTask '{id}' children must be Tasks, got {type(child).__name__}"
                )
            if child.id in seen:
                raise ValueError(f"FanOutTask '{id}' has two children with id '{child.id}'")
            seen.add(child.id)
        if not isinstance(next_action, NextAction):
            raise TypeError(
                f"FanOutTask '{id}' next_action must be a NextAction, "
                f"got {type(next_action).__name__}"
            )
        self.id = id
        self.children = kids
        self.prefix = prefix
        self.next_action = next_action
        self.timeout = timeout

    async def run(self, ctx: Context) -> TaskResult:
        return await self._run_children(ctx, _engine.run_child)

    async def _run_children(self, ctx: Context, run_child: ChildRunner) -> TaskResult:
        """Run each child with ``run_child`` (the engine's, which tracers may see), then write
        what they returned into ``ctx``."""
        # Each child runs in its own asyncio Task: plain def children finish in their first
        # slice, in order; async ones then proceed together.
        outcomes = await asyncio.gather(
            *(run_child(child, ctx) for child in self.children),
            return_exceptions=True,
        )
        for child, outcome in zip(self.children, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # a cancellation, not a failure
                # The first failed child in the order given, as the fan-out's own failure:
                # run by the engine or called directly (in a task's unit test), the same error.
                raise TaskExecutionFailed(self.id, self._failed(child, outcome)) from outcome
        prefix = self.prefix
        for child, result in zip(self.children, outcomes, strict=True):
            assert isinstance(result, TaskResult)
            result.task_id = child.id
            key = f"{prefix}.{child.id}."
            if result.response is not None:
                ctx.set(key + "response", result.response)
            if result.status_message is not None:
                ctx.set(key + "status", result.status_message)
            ctx.set(key + "next_action", str(result.next_action))
        message = f"FanOutTask '{self.id}' completed {len(self.children)} child task(s)"
        return TaskResult(message, self.next_action, message)

    def _failed(self, child: Task, error: Exception) -> str:
        """``Task 'fan' failed: child task 'x' failed: <cause>`` (or ``timed out after 1s``)."""
        text = str(error)
        own = f"Task {quote_id(child.id)} "
        if isinstance(error, TaskExecutionFailed) and text.startswith(own):
            detail = text[len(own) :]  # "failed: ..." or "timed out after ..."
        else:
            detail = f"failed: {text}"
        return f"Task {quote_id(self.id)} failed: child task {quote_id(child.id)} {detail}"
