"""More concurrent steps than connections: they wait their turn for one, or fail in time.

Many runners stepping one session are flowcore's concurrency conformance suite, which
test_sql_conformance runs on both backends.
"""

from __future__ import annotations

import asyncio

from flowcore_sql import PostgresSessionStorage
from sql_backends import new_schema

from flowcore import FlowRunner, StorageError
from flowcore.testing import counter_graph

GRAPH = counter_graph()


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
