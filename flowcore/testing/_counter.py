"""``counter_graph``: the workflow that tests of many runners and of faults step over and over."""

from __future__ import annotations

import asyncio

from flowcore._context import Context
from flowcore._graph import Graph
from flowcore._task import task
from flowcore._values import NextAction, TaskResult

__all__ = ["counter_graph"]


def counter_graph(*, step_seconds: float = 0.0) -> Graph:
    """A graph of one task, ``increment``, that reads the context's ``counter``, sleeps
    ``step_seconds`` (0: it only lets other tasks run), stores the counter plus one and waits
    for input: each step of a session adds one, so a lost or doubled update shows.

    Runners stepping one session at once load the same version during the sleep; a longer one
    lets a fault (a server restart, a timeout) catch steps in flight.
    """

    @task("increment")
    async def increment(ctx: Context) -> TaskResult:
        counter = ctx.get("counter", 0)
        await asyncio.sleep(step_seconds)
        ctx.set("counter", counter + 1)
        return TaskResult(None, NextAction.WaitForInput)

    return Graph("counter").add_task(increment)
