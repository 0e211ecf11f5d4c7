"""Concurrent runs: no lost update on one session, no cross-talk between sessions."""

from __future__ import annotations

import asyncio

from flowcore import (
    Context,
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    SessionConflict,
    Task,
    TaskResult,
)

from .helpers import graph_of


class Count(Task):
    """Increments ctx['count'] after yielding, so concurrent runs interleave."""

    id = "count"

    async def run(self, ctx: Context) -> TaskResult:
        seen = ctx.get("count", 0)
        await asyncio.sleep(0.001)
        ctx.set("count", seen + 1)
        ctx.add_user_message(f"{ctx.get('owner')}:{seen + 1}")
        return TaskResult(str(seen + 1), NextAction.GoTo("count"))


async def test_concurrent_runs_of_one_session_lose_no_update():
    storage = InMemorySessionStorage()
    graph = graph_of(Count())
    await FlowRunner(graph, storage).create_session("shared")
    runners = [FlowRunner(graph, storage) for _ in range(20)]

    outcomes = await asyncio.gather(*(r.run("shared") for r in runners), return_exceptions=True)

    committed = [o for o in outcomes if not isinstance(o, BaseException)]
    conflicts = [o for o in outcomes if isinstance(o, SessionConflict)]
    assert len(committed) + len(conflicts) == 20
    assert len(committed) >= 1
    stored = await storage.get("shared")
    assert stored.context.get("count") == len(committed)
    assert stored.version == 1 + len(committed)


async def test_fifty_sessions_in_parallel_do_not_see_each_other():
    storage = InMemorySessionStorage()
    runner = FlowRunner(graph_of(Count()), storage)
    ids = [f"user-{i}" for i in range(50)]
    for sid in ids:
        await runner.create_session(sid, context={"owner": sid})

    for _ in range(3):
        await asyncio.gather(*(runner.run(sid) for sid in ids))

    for sid in ids:
        stored = await storage.get(sid)
        assert stored.context.get("count") == 3
        assert [m.content for m in stored.context.get_chat_history()] == [
            f"{sid}:1",
            f"{sid}:2",
            f"{sid}:3",
        ]
