"""Per-step cost of FlowRunner.run on in-memory storage, beside a fixed reference kernel.

Run with ``make bench``. The machine is noisy: read the figures as ratios to the reference
kernel measured in the same run, and quote medians.
"""

from __future__ import annotations

import asyncio

import pytest

from flowcore import (
    Context,
    FlowRunner,
    Graph,
    InMemorySessionStorage,
    NextAction,
    Task,
    TaskResult,
)

STEPS_PER_ROUND = 1000


class SyncHop(Task):
    def __init__(self, id: str, to: str) -> None:
        self.id = id
        self.to = to

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("last", self.id)
        return TaskResult(None, NextAction.Continue)


class AsyncHop(SyncHop):
    async def run(self, ctx: Context) -> TaskResult:  # type: ignore[override]
        ctx.set("last", self.id)
        return TaskResult(None, NextAction.Continue)


def three_task_cycle(task_class: type[SyncHop]) -> Graph:
    graph = Graph("cycle")
    for name, to in (("a", "b"), ("b", "c"), ("c", "a")):
        graph.add_task(task_class(name, to))
        graph.add_edge(name, to)
    return graph


def steps_per_round(task_class: type[SyncHop]):
    loop = asyncio.new_event_loop()
    runner = FlowRunner(three_task_cycle(task_class), InMemorySessionStorage())
    context = {f"k{i}": i for i in range(5)}
    loop.run_until_complete(runner.create_session("bench", context=context))

    async def many() -> None:
        for _ in range(STEPS_PER_ROUND):
            await runner.run("bench")

    def one_round() -> None:
        loop.run_until_complete(many())

    return one_round, loop


def reference_round():
    """The least a step must do: look up a session, await a task that sets a key,
    pick the next task from a dict, store the session back."""
    loop = asyncio.new_event_loop()
    sessions = {"bench": {"task": "a", "data": {f"k{i}": i for i in range(5)}}}
    edges = {"a": "b", "b": "c", "c": "a"}

    async def trivial(data: dict) -> None:
        data["last"] = 1

    async def many() -> None:
        for _ in range(STEPS_PER_ROUND):
            session = sessions["bench"]
            await trivial(session["data"])
            session["task"] = edges[session["task"]]
            sessions["bench"] = session

    def one_round() -> None:
        loop.run_until_complete(many())

    return one_round, loop


@pytest.mark.parametrize("variant", ["reference", "sync", "async"])
def test_step(benchmark, variant):
    if variant == "reference":
        one_round, loop = reference_round()
    else:
        one_round, loop = steps_per_round(SyncHop if variant == "sync" else AsyncHop)
    benchmark.extra_info["steps_per_round"] = STEPS_PER_ROUND
    try:
        benchmark.pedantic(one_round, rounds=20, warmup_rounds=2)
    finally:
        loop.close()
