"""``StorageBenchmark``: what ``StorageConformance`` is for a backend's behaviour, for its speed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from flowcore._context import Context
from flowcore._graph import Graph
from flowcore._runner import FlowRunner
from flowcore._storage import InMemorySessionStorage, SessionStorage
from flowcore._task import Task
from flowcore._values import NextAction, TaskResult

from ._plugin import gate_of
from ._suite import StorageSuite
from ._timing import Rounds
from ._timing import ratio as ratio_of
from ._workload import StepWorkload

__all__ = ["StorageBenchmark"]

_T = TypeVar("_T")


class _Hop(Task):
    def __init__(self, id: str) -> None:
        self.id = id

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("last", self.id)
        return TaskResult(None, NextAction.Continue)


def _ring() -> Graph:
    """Three trivial tasks in a ring: every step moves on one, no session ever completes."""
    graph = Graph("flowcore-storage-benchmark")
    for i in range(3):
        graph.add_task(_Hop(f"t{i}"))
        graph.add_edge(f"t{i}", f"t{(i + 1) % 3}")
    return graph


def _context_of(size_bytes: int) -> dict[str, str]:
    return {f"k{i}": "x" * 100 for i in range(max(1, size_bytes // 110))}


class StorageBenchmark(StorageSuite):
    """A backend's speed as benchmarks, each measured against ``InMemorySessionStorage``.

    Subclass it (as ``Test...``) and override the ``storage`` fixture, exactly as for
    ``StorageConformance`` (the same fixture serves both)::

        from flowcore.testing import StorageBenchmark

        class TestMyStorageSpeed(StorageBenchmark):
            @pytest.fixture
            async def storage(self, tmp_path):
                async with MyStorage(tmp_path / "sessions.db") as storage:
                    yield storage

    Three benchmarks run: a step (``runner.run`` on a 3-task ring, a 5-key context), the same
    step with a 100 KB context, and ``concurrency`` sessions stepped at once. Each runs in
    interleaved rounds with the same workload on an in-memory storage, and their ratio is what
    ``--flowcore-baseline`` gates on. They need pytest-benchmark and pytest-asyncio; pytest-
    benchmark's options apply (``--benchmark-skip`` skips them, ``--benchmark-disable`` runs one
    round of each as a smoke test). Set the class attributes to change the rounds and sizes.
    """

    rounds: int = 10
    """Timed rounds of each benchmark (after ``warmup`` rounds)."""
    warmup: int = 1
    steps: int = 50
    """``runner.run`` calls per round."""
    concurrency: int = 20
    """Sessions stepped at once in ``test_concurrent_sessions``."""

    async def test_step(
        self, storage: SessionStorage, benchmark: Any, request: pytest.FixtureRequest
    ) -> None:
        """One ``runner.run`` per call, a 5-key context."""
        await self._compare(storage, benchmark, request, {f"k{i}": i for i in range(5)})

    async def test_step_with_a_100kb_context(
        self, storage: SessionStorage, benchmark: Any, request: pytest.FixtureRequest
    ) -> None:
        """One ``runner.run`` per call on a session carrying 100 KB of context."""
        await self._compare(storage, benchmark, request, _context_of(100_000))

    async def test_concurrent_sessions(
        self, storage: SessionStorage, benchmark: Any, request: pytest.FixtureRequest
    ) -> None:
        """``concurrency`` sessions, one step each at once (``asyncio.gather``), per step."""
        await self._compare(storage, benchmark, request, {"k": 1}, concurrency=self.concurrency)

    async def _compare(
        self,
        storage: SessionStorage,
        benchmark: Any,
        request: pytest.FixtureRequest,
        context: dict[str, Any],
        concurrency: int = 1,
    ) -> None:
        graph = _ring()
        steps = max(self.steps, concurrency)

        def workload(backend: SessionStorage) -> StepWorkload:
            runner = FlowRunner(graph, backend)
            return StepWorkload(runner, steps=steps, context=context, concurrency=concurrency)

        subject = workload(storage)
        reference = workload(InMemorySessionStorage())
        measured = Rounds(type(storage).__name__)
        in_memory = Rounds("InMemorySessionStorage")
        loop = asyncio.get_running_loop()

        def on_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        # pytest-benchmark times a plain function; the storage lives on this test's event loop.
        # So pytest-benchmark runs in a thread and hands each round to the loop; every figure
        # kept is timed on the loop itself, where the hand-over is not.
        def setup() -> tuple[tuple[list[str]], dict[str, Any]]:
            ids = on_loop(reference.prepare())
            in_memory.per_op.append(on_loop(reference.timed_round(ids)))
            return (on_loop(subject.prepare()),), {}

        def target(session_ids: list[str]) -> None:
            measured.per_op.append(on_loop(subject.timed_round(session_ids)))

        benchmark.group = f"flowcore storage: {type(storage).__name__}"
        await asyncio.to_thread(
            benchmark.pedantic, target, setup=setup, rounds=self.rounds, warmup_rounds=self.warmup
        )
        if len(measured.per_op) > self.rounds:
            del measured.per_op[: self.warmup], in_memory.per_op[: self.warmup]
        ratio = ratio_of(measured, in_memory)
        if not benchmark.disabled:
            gate = gate_of(request.config)
            name = request.node.nodeid
            first = None
            if gate.over_limit(name, ratio):
                first = ratio
                measured.per_op.clear()
                in_memory.per_op.clear()
                for _ in range(self.rounds):
                    ids = await reference.prepare()
                    in_memory.per_op.append(await reference.timed_round(ids))
                    ids = await subject.prepare()
                    measured.per_op.append(await subject.timed_round(ids))
                ratio = ratio_of(measured, in_memory)
            gate.record(name, ratio, first)
        benchmark.extra_info.update(
            flowcore_step_us=measured.min * 1e6,
            flowcore_in_memory_us=in_memory.min * 1e6,
            flowcore_ratio=ratio,
            flowcore_calls_per_round=steps,
        )
