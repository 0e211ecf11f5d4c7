"""What the benchmark gates time: ``runner.run`` on fresh sessions of a graph, round by round."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flowcore._context import Context
from flowcore._errors import GraphError
from flowcore._graph import Graph
from flowcore._runner import FlowRunner
from flowcore._values import ExecutionStatus

__all__ = ["BenchmarkFailed", "StepWorkload", "check_count"]


class BenchmarkFailed(GraphError):
    """A benchmarked workflow did not run as a benchmark needs (a step ended in an error)."""


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


class StepWorkload:
    """``runner.run(session_id)`` ``steps`` times per round, on sessions created beforehand.

    Sessions are created (untimed) by ``prepare``; a round (``timed_round``) runs them in turn,
    each until it completes, until ``steps`` calls were made. With ``concurrency`` above 1 the
    calls go out ``concurrency`` sessions at a time (``asyncio.gather``), as concurrent requests
    would; those sessions must not complete (give a graph that loops or waits for input).
    """

    def __init__(
        self,
        runner: FlowRunner,
        *,
        steps: int,
        context: Context | Mapping[str, Any] | None = None,
        concurrency: int = 1,
    ) -> None:
        if not isinstance(runner.graph, Graph):
            raise TypeError(f"expected a flowcore.Graph, got {type(runner.graph).__name__}")
        self.runner = runner
        self.steps = check_count("steps", steps)
        self.concurrency = check_count("concurrency", concurrency)
        self.context = context
        self.calls_per_session: int | None = None  # learned in the first round

    async def prepare(self) -> list[str]:
        """Create the sessions the next round runs; nothing here is timed."""
        if self.concurrency > 1:
            count = self.concurrency
        elif self.calls_per_session is None:
            count = 1
        else:
            count = math.ceil(self.steps / self.calls_per_session)
        ids = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
        for session_id in ids:
            await self.runner.create_session(session_id, context=self.context)
        return ids

    async def timed_round(self, session_ids: list[str]) -> float:
        """Run one round on sessions from ``prepare``; seconds per ``runner.run`` call."""
        clock = time.perf_counter
        start = clock()
        if self.concurrency > 1:
            calls = await self._concurrent(session_ids)
        else:
            calls = await self._sequential(session_ids)
        return (clock() - start) / calls

    async def _sequential(self, session_ids: list[str]) -> int:
        run, steps, calls = self.runner.run, self.steps, 0
        for session_id in session_ids:
            made = 0
            while calls < steps:
                status = (await run(session_id)).status
                calls += 1
                made += 1
                if status == ExecutionStatus.Completed:
                    if self.calls_per_session is None:
                        self.calls_per_session = made
                    break
                if isinstance(status, ExecutionStatus.Error):
                    raise BenchmarkFailed(
                        f"session {session_id!r} of graph {self.runner.graph.id!r} ended in an "
                        f"error at call {made}: {status.message}; a benchmarked workflow must "
                        "run without errors"
                    )
        if self.calls_per_session is None:
            self.calls_per_session = steps  # never completed: one session serves a round
        return calls

    async def _concurrent(self, session_ids: list[str]) -> int:
        run, calls = self.runner.run, 0
        while calls < self.steps:
            results = await asyncio.gather(*(run(session_id) for session_id in session_ids))
            calls += len(results)
            for session_id, result in zip(session_ids, results, strict=True):
                status = result.status
                if isinstance(status, ExecutionStatus.Error):
                    raise BenchmarkFailed(
                        f"session {session_id!r} ended in an error: {status.message}"
                    )
                if status == ExecutionStatus.Completed:
                    raise BenchmarkFailed(
                        f"session {session_id!r} of graph {self.runner.graph.id!r} completed: "
                        "concurrent rounds need a graph that loops or waits for input"
                    )
        return calls
