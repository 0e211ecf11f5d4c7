"""What the storage benchmarks (test_sql_storage.py, test_redis_storage.py) share: the counting
workflow they step, how a step is timed on its own clock, and the table of figures of a run."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from flowcore import (
    Context,
    FlowRunner,
    GraphBuilder,
    NextAction,
    SessionConflict,
    SessionStorage,
    TaskResult,
    task,
)


@task("count")
def count(ctx: Context) -> TaskResult:
    ctx.set("counter", ctx.get("counter", 0) + 1)
    return TaskResult(None, NextAction.WaitForInput)


GRAPH = GraphBuilder("bench").add_task(count).build()


def context_of(size: int) -> dict[str, Any]:
    """About ``size`` bytes of context that does not compress (as real data mostly does not)."""
    return {"counter": 0, "notes": secrets.token_hex(size // 2)}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
    }


async def timed(step: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await step()
        samples.append(clock() - started)
    return samples


def run(benchmark: Any, coroutine: Callable[[], Awaitable[None]]) -> None:
    """Let pytest-benchmark time one round of ``coroutine`` (the figures come from inside)."""
    benchmark.pedantic(lambda: asyncio.run(coroutine()), rounds=1, iterations=1)


class Figures:
    """The figures of one benchmark module's run, by benchmark, and their Markdown table."""

    def __init__(self, table: Path) -> None:
        self.table = table
        self.results: dict[str, dict[str, Any]] = {}

    def record(self, benchmark: Any, name: str, **figures: Any) -> None:
        benchmark.extra_info.update(figures)
        self.results[name] = figures

    def report(self, request: pytest.FixtureRequest) -> None:
        """Write the table docs/performance.md shows to ``table``, and print it."""
        if not self.results:
            return
        lines = ["| Benchmark | p50 | p99 | Other |", "|---|---:|---:|---|"]
        for name, f in self.results.items():
            p50 = f"{f['p50_us']:.0f} µs" if "p50_us" in f else ""
            p99 = f"{f['p99_us']:.0f} µs" if "p99_us" in f else ""
            other = ", ".join(f"{k} {v}" for k, v in f.items() if not k.endswith("_us"))
            lines.append(f"| {name} | {p50} | {p99} | {other} |")
        self.table.parent.mkdir(exist_ok=True)
        self.table.write_text("\n".join(lines) + "\n")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)


async def many_sessions(
    storage: SessionStorage, prefix: str, context: dict[str, Any], *, warmup: int = 0
) -> dict[str, Any]:
    """32 sessions (ids ``prefix-0`` ...) stepped at once, 100 steps each (after ``warmup``
    steps each, untimed): the percentiles of a step, and the steps a second."""
    runner = FlowRunner(GRAPH, storage)
    ids = [f"{prefix}-{i}" for i in range(32)]
    for session_id in ids:
        await storage.delete(session_id)
        await runner.create_session(session_id, context=context)

    async def keep_stepping(session_id: str, steps: int) -> list[float]:
        return await timed(lambda: runner.run(session_id), steps)

    if warmup:
        await asyncio.gather(*(keep_stepping(s, warmup) for s in ids))
    started = time.perf_counter()
    samples = await asyncio.gather(*(keep_stepping(s, 100) for s in ids))
    elapsed = time.perf_counter() - started
    steps = [s for each in samples for s in each]
    return {**percentiles(steps), "steps/s": round(len(steps) / elapsed)}


async def hot_session(storages: list[SessionStorage], rounds: int) -> dict[str, Any]:
    """64 runners over ``storages`` (opened here, closed after) run one session at once,
    ``rounds`` times: each run commits or is refused with SessionConflict, and no update is lost.
    """
    for each in storages:
        await each.__aenter__()
    try:
        runners = [FlowRunner(GRAPH, storages[i % len(storages)]) for i in range(64)]
        await storages[0].delete("hot")
        await runners[0].create_session("hot")
        committed = conflicts = 0
        durations = []
        for _ in range(rounds):
            started = time.perf_counter()
            outcomes = await asyncio.gather(
                *(r.run("hot") for r in runners), return_exceptions=True
            )
            durations.append(time.perf_counter() - started)
            conflicts += sum(isinstance(o, SessionConflict) for o in outcomes)
            committed += sum(not isinstance(o, BaseException) for o in outcomes)
            assert all(
                isinstance(o, SessionConflict) for o in outcomes if isinstance(o, BaseException)
            )
        stored = await storages[0].get("hot")
        assert stored is not None
        lost = committed - stored.context.get("counter", 0)
        assert lost == 0
    finally:
        for each in storages:
            await each.close()
    return {
        "round p50": f"{statistics.median(durations) * 1e3:.1f} ms",
        "committed/round": round(committed / rounds, 1),
        "conflicts/round": round(conflicts / rounds, 1),
        "lost updates": lost,
    }
