"""Many runners, one session: every step is committed once or refused, and no update is lost.

The runners share the database through several storages (each with its own connections, and for
SQLite its own thread), as separate processes would.
"""

from __future__ import annotations

import asyncio

import pytest
from flowcore_sql import PostgresSessionStorage, SqlSessionStorage
from sql_backends import Backend, new_schema

from flowcore import (
    Context,
    ExecutionResult,
    FlowRunner,
    GraphBuilder,
    NextAction,
    SessionConflict,
    StorageError,
    TaskResult,
    task,
)


@task("increment")
async def increment(ctx: Context) -> TaskResult:
    counter = ctx.get("counter", 0)
    await asyncio.sleep(0)  # let the other runners load the same version meanwhile
    ctx.set("counter", counter + 1)
    return TaskResult(None, NextAction.WaitForInput)


GRAPH = GraphBuilder("counter").add_task(increment).build()


async def runners_on(backend: Backend, count: int, storages: int = 4) -> list[FlowRunner]:
    opened: list[SqlSessionStorage] = [await backend.open() for _ in range(storages)]
    return [FlowRunner(GRAPH, opened[i % storages]) for i in range(count)]


async def test_64_concurrent_runs_of_one_session_commit_or_conflict(backend: Backend) -> None:
    runners = await runners_on(backend, 64)
    await runners[0].create_session("hot")

    outcomes = await asyncio.gather(*(r.run("hot") for r in runners), return_exceptions=True)

    committed = [o for o in outcomes if isinstance(o, ExecutionResult)]
    refused = [o for o in outcomes if isinstance(o, SessionConflict)]
    assert len(committed) + len(refused) == 64, [o for o in outcomes if isinstance(o, Exception)]
    assert committed
    stored = await runners[0].storage.get("hot")
    assert stored is not None
    assert stored.context.get("counter") == len(committed)
    assert stored.version == 1 + len(committed)


async def test_runners_that_retry_on_conflict_lose_no_update(backend: Backend) -> None:
    runners = await runners_on(backend, 64)
    await runners[0].create_session("hot")

    async def step_once(runner: FlowRunner) -> int:
        conflicts = 0
        while True:
            try:
                await runner.run("hot")
                return conflicts
            except SessionConflict:
                conflicts += 1

    conflicts = await asyncio.gather(*(step_once(r) for r in runners))

    stored = await runners[0].storage.get("hot")
    assert stored is not None
    assert stored.context.get("counter") == 64
    assert stored.version == 65
    assert sum(conflicts) > 0  # they did collide


async def test_more_concurrent_steps_than_connections_wait_their_turn(postgres_url: str) -> None:
    async with PostgresSessionStorage(
        postgres_url, schema=new_schema(), pool_size=2, max_overflow=1
    ) as storage:
        runner = FlowRunner(GRAPH, storage)
        for i in range(40):
            await runner.create_session(f"s{i}")

        await asyncio.gather(*(runner.run(f"s{i}") for i in range(40)))

        for i in range(40):
            stored = await storage.get(f"s{i}")
            assert stored is not None
            assert stored.context.get("counter") == 1


async def test_a_step_that_finds_no_free_connection_in_time_fails(postgres_url: str) -> None:
    async with PostgresSessionStorage(
        postgres_url, schema=new_schema(), pool_size=1, max_overflow=0, pool_timeout=0.001
    ) as storage:
        outcomes = await asyncio.gather(
            *(storage.get(f"s{i}") for i in range(200)), return_exceptions=True
        )

        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert failures
        assert all(isinstance(f, StorageError) for f in failures), failures
        assert "pool_timeout (0.001s)" in str(failures[0])
        assert "raise them, or pool_timeout" in str(failures[0])
        assert await storage.get("s1") is None  # and the storage still works


@pytest.mark.parametrize("storages", [1, 8])
async def test_concurrent_creates_of_many_sessions_all_land(
    backend: Backend, storages: int
) -> None:
    runners = await runners_on(backend, 50, storages)

    await asyncio.gather(*(r.create_session(f"s{i}") for i, r in enumerate(runners)))

    for i in range(50):
        assert await runners[0].storage.get(f"s{i}") is not None
