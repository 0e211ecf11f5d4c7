"""Small building blocks the tests share: tasks that do one thing, and a runner factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from flowcore import (
    Context,
    FlowRunner,
    Graph,
    InMemorySessionStorage,
    NextAction,
    Task,
    TaskResult,
)


class Step(Task):
    """A sync task that appends its id to ctx['trail'] and returns a fixed action."""

    def __init__(
        self,
        id: str,
        action: NextAction = NextAction.Continue,
        *,
        response: str | None = None,
        status: str | None = None,
    ) -> None:
        self.id = id
        self.action = action
        self.response = response if response is not None else f"{id} done"
        self.status = status

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("trail", [*ctx.get("trail", []), self.id])
        return TaskResult(self.response, self.action, self.status)


class AsyncStep(Step):
    """The same as Step, with an async run that yields to the event loop once."""

    async def run(self, ctx: Context) -> TaskResult:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().run(ctx)


class Fails(Task):
    """A task that writes to the context and the chat, then raises."""

    def __init__(self, id: str, error: Exception | None = None) -> None:
        self.id = id
        self.error = error or RuntimeError("boom")

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("written_by_failed_task", True)
        ctx.add_user_message("lost")
        raise self.error


def graph_of(*tasks: Task, edges: list[tuple[str, str]] = (), **options: object) -> Graph:  # type: ignore[assignment]
    graph = Graph("test", **options)  # type: ignore[arg-type]
    for t in tasks:
        graph.add_task(t)
    for a, b in edges:
        graph.add_edge(a, b)
    return graph


def runner_for(graph: Graph) -> FlowRunner:
    return FlowRunner(graph, InMemorySessionStorage())


Predicate = Callable[[Context], bool]
