"""The graph the test workers run: three tasks, each recording itself in the context.

``first`` -> ``second`` -> ``third`` (End). Context keys steer a session: ``sleep`` (seconds
each task takes), ``wait`` (``first`` ends with ``WaitUntil`` that many seconds ahead), ``ask``
(``first`` waits for an ``answer``), ``fail`` (``second`` raises), ``loop`` (``third`` goes back
to ``first`` that many times). ``applied`` lists the tasks whose steps were saved, in order, and
``second_at`` is when ``second`` ran.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from flowcore import Graph, GraphBuilder, NextAction, TaskResult, task


def record(ctx, task_id: str) -> None:
    ctx.set("applied", [*ctx.get("applied", []), task_id])


@task("first")
async def first(ctx):
    await asyncio.sleep(ctx.get("sleep", 0))
    if ctx.get("ask") and "answer" not in ctx:
        return TaskResult("What is the answer?", NextAction.WaitForInput)
    record(ctx, "first")
    if ctx.get("wait") is not None:
        return TaskResult("sleeping", NextAction.WaitUntil(timedelta(seconds=ctx.get("wait"))))
    return TaskResult("first done", NextAction.Continue)


@task("second")
async def second(ctx):
    await asyncio.sleep(ctx.get("sleep", 0))
    if ctx.get("fail"):
        raise RuntimeError("the vendor registry is down")
    ctx.set("second_at", datetime.now(timezone.utc))
    record(ctx, "second")
    return TaskResult("second done", NextAction.Continue)


@task("third")
async def third(ctx):
    await asyncio.sleep(ctx.get("sleep", 0))
    record(ctx, "third")
    return TaskResult(f"done: {' '.join(ctx.get('applied'))}", NextAction.End)


def build(version: int = 1) -> Graph:
    return (
        GraphBuilder("celery-tests", version=version)
        .add_task(first)
        .add_task(second)
        .add_task(third)
        .add_edge("first", "second")
        .add_edge("second", "third")
        .build()
    )


graph = build()
