"""Many runners, one session: every step is committed once or refused, and no update is lost.

The runners share the server through several storages (each with its own connections), as
separate processes would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from flowcore_redis import RedisSessionStorage

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


@pytest.fixture
async def runners(redis_url: str, prefix: str) -> AsyncIterator[Callable[[int], list[FlowRunner]]]:
    """``runners(count)``: that many runners, spread over 4 storages of the test's prefix."""
    opened = [RedisSessionStorage(redis_url, prefix=prefix) for _ in range(4)]

    def make(count: int) -> list[FlowRunner]:
        return [FlowRunner(GRAPH, opened[i % len(opened)]) for i in range(count)]

    yield make
    for storage in opened:
        await storage.close()


async def test_64_concurrent_runs_of_one_session_commit_or_conflict(
    runners: Callable[[int], list[FlowRunner]],
) -> None:
    many = runners(64)
    await many[0].create_session("hot")

    outcomes = await asyncio.gather(*(r.run("hot") for r in many), return_exceptions=True)

    committed = [o for o in outcomes if isinstance(o, ExecutionResult)]
    refused = [o for o in outcomes if isinstance(o, SessionConflict)]
    assert len(committed) + len(refused) == 64, [o for o in outcomes if isinstance(o, Exception)]
    assert committed
    stored = await many[0].storage.get("hot")
    assert stored is not None
    assert stored.context.get("counter") == len(committed)
    assert stored.version == 1 + len(committed)


async def test_64_runners_that_retry_on_conflict_lose_no_update(
    runners: Callable[[int], list[FlowRunner]],
) -> None:
    many = runners(64)
    await many[0].create_session("hot")

    async def step_once(runner: FlowRunner) -> int:
        conflicts = 0
        while True:
            try:
                await runner.run("hot")
                return conflicts
            except SessionConflict:
                conflicts += 1

    conflicts = await asyncio.gather(*(step_once(r) for r in many))

    stored = await many[0].storage.get("hot")
    assert stored is not None
    assert stored.context.get("counter") == 64
    assert stored.version == 65
    assert sum(conflicts) > 0  # they did collide


async def test_concurrent_creates_of_one_id_let_one_win_and_list_it_once(
    runners: Callable[[int], list[FlowRunner]],
) -> None:
    many = runners(32)

    outcomes = await asyncio.gather(
        *(r.create_session("taken", context={"by": i}) for i, r in enumerate(many)),
        return_exceptions=True,
    )

    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, SessionConflict) for o in outcomes if isinstance(o, BaseException))
    assert await many[0].storage.list_sessions() == ["taken"]


async def test_more_concurrent_steps_than_connections_wait_their_turn(
    redis_url: str, prefix: str
) -> None:
    async with RedisSessionStorage(redis_url, prefix=prefix, pool_size=2) as storage:
        runner = FlowRunner(GRAPH, storage)
        await asyncio.gather(*(runner.create_session(f"s{i}") for i in range(40)))

        await asyncio.gather(*(runner.run(f"s{i}") for i in range(40)))

        for i in range(40):
            stored = await storage.get(f"s{i}")
            assert stored is not None
            assert stored.context.get("counter") == 1
        assert len(await storage.list_sessions()) == 40


async def test_a_command_that_finds_no_free_connection_in_time_fails(
    redis_url: str, prefix: str
) -> None:
    async with RedisSessionStorage(
        redis_url, prefix=prefix, pool_size=1, pool_timeout=0.0001
    ) as storage:
        outcomes = await asyncio.gather(
            *(storage.get(f"s{i}") for i in range(200)), return_exceptions=True
        )

        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert failures
        assert all(isinstance(f, StorageError) for f in failures), failures
        assert "pool_timeout (0.0001s)" in str(failures[0])
        assert "raise pool_size, or pool_timeout" in str(failures[0])
        assert await storage.get("s1") is None  # and the storage still works
