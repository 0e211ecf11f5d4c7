"""pydantic-graph's cases, on its ``BaseNode`` graph and state persistence (pydantic-graph < 2).

One step per request: the run's state and next node live in a ``SimpleStatePersistence`` (which
keeps the last snapshot in memory and hands out a deep copy of it to resume); each request is
``async with graph.iter_from_persistence(persistence) as run: await run.next()``: one node of a
ring of 3, each setting ``state.last``; ``next`` snapshots the state and the node after it.
A whole run: ``await graph.run(Line0(), state=State())`` through 3 nodes in a line to ``End``.
pydantic-graph 2 dropped state persistence, so only the 1.x line can take this step.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from benchmarks.peers.harness import Case, Skipped
from benchmarks.peers.timing import Loop

LIBRARY = "pydantic-graph"

try:
    from pydantic_graph import BaseNode, End, GraphRunContext
    from pydantic_graph.graph import Graph
    from pydantic_graph.persistence.in_mem import SimpleStatePersistence
except ImportError:  # not installed, or 2.x, which has neither this Graph nor persistence
    AVAILABLE = False
else:
    AVAILABLE = True


@dataclass
class State:
    last: str | None = None


if AVAILABLE:

    @dataclass
    class Ring0(BaseNode[State]):
        async def run(self, ctx: GraphRunContext[State]) -> Ring1:
            ctx.state.last = "t0"
            return Ring1()

    @dataclass
    class Ring1(BaseNode[State]):
        async def run(self, ctx: GraphRunContext[State]) -> Ring2:
            ctx.state.last = "t1"
            return Ring2()

    @dataclass
    class Ring2(BaseNode[State]):
        async def run(self, ctx: GraphRunContext[State]) -> Ring0:
            ctx.state.last = "t2"
            return Ring0()

    @dataclass
    class Line0(BaseNode[State]):
        async def run(self, ctx: GraphRunContext[State]) -> Line1:
            ctx.state.last = "t0"
            return Line1()

    @dataclass
    class Line1(BaseNode[State]):
        async def run(self, ctx: GraphRunContext[State]) -> Line2:
            ctx.state.last = "t1"
            return Line2()

    @dataclass
    class Line2(BaseNode[State, None, str]):
        async def run(self, ctx: GraphRunContext[State]) -> End[str]:
            ctx.state.last = "t2"
            return End("done")


def _step_case() -> Case:
    loop = Loop()
    graph = Graph(nodes=[Ring0, Ring1, Ring2], name="ring")
    current: dict[str, Any] = {}

    async def step() -> None:
        async with graph.iter_from_persistence(current["persistence"]) as run:
            await run.next()

    async def start() -> None:
        current["persistence"] = persistence = SimpleStatePersistence()
        await graph.initialize(Ring0(), persistence, state=State())
        for _ in range(3):
            await step()
        snapshot = persistence.last_snapshot
        assert isinstance(snapshot.node, Ring0), snapshot
        assert snapshot.state.last == "t2", snapshot

    return Case(
        "step-memory",
        LIBRARY,
        version("pydantic-graph"),
        "`SimpleStatePersistence`, `iter_from_persistence` + one `next()`",
        start=lambda: loop.call(start()),
        run=loop.timed(step),
        close=loop.close,
    )


def _whole_run_case() -> Case:
    loop = Loop()
    graph = Graph(nodes=[Line0, Line1, Line2], name="line")

    async def start() -> None:
        result = await graph.run(Line0(), state=State())
        assert (result.output, result.state.last) == ("done", "t2"), result

    return Case(
        "whole-run",
        LIBRARY,
        version("pydantic-graph"),
        "`graph.run(...)`, its default persistence",
        start=lambda: loop.call(start()),
        run=loop.timed(lambda: graph.run(Line0(), state=State())),
        close=loop.close,
    )


def cases(sqlite_dir: str, postgres: dict[str, str] | None) -> tuple[list[Case], list[Skipped]]:
    if not AVAILABLE:
        reason = "pydantic-graph 1.x is not installed (`make bench-peers` installs it)"
        return [], [Skipped(w, LIBRARY, reason) for w in ("step-memory", "whole-run")]
    reason = "has no SQLite or PostgreSQL persistence (a JSON file is its only store on disk)"
    return [_step_case(), _whole_run_case()], [
        Skipped(workload, LIBRARY, reason) for workload in ("step-sqlite", "step-postgres")
    ]
