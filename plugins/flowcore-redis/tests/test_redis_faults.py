"""Redis failing under the storage: a restart or a flush in the middle of traffic, a stuck server.

The steps a fault cuts fail with StorageError naming the URL, nothing is half-written, and the
same process carries on once the server is back. Each test runs a redis-server of its own (on a
free port, in a temporary directory), never the shared one other test runs are using.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest
from flowcore_redis import RedisSessionStorage
from redis_servers import PrivateRedis

from flowcore import FlowRunner, SessionConflict, SessionNotFound, StorageError
from flowcore.testing import StepTraffic, counter_graph

pytestmark = pytest.mark.slow


GRAPH = counter_graph(step_seconds=0.001)  # a step long enough to be caught in flight
SESSIONS = [f"s{i}" for i in range(12)]
CUT = (StorageError, SessionNotFound)  # what a step cut by a fault may raise


async def test_a_restart_fails_the_steps_in_flight_and_later_steps_succeed(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    # Persistence as a deployment that keeps sessions across restarts has it: every write is
    # in the append-only file before Redis answers it.
    server = private_redis("--appendonly", "yes", "--appendfsync", "always")
    async with RedisSessionStorage(server.url, connect_timeout=1, command_timeout=5) as storage:
        runner = FlowRunner(GRAPH, storage)
        for session_id in SESSIONS:
            await runner.create_session(session_id)
        async with StepTraffic([runner], SESSIONS, caught=CUT) as traffic:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.restart, kill=True)  # a crash, then a new start
            before_back = sum(traffic.succeeded.values())
            await asyncio.sleep(0.5)

        assert traffic.errors, "the restart should have cut some steps"
        assert all(isinstance(e, StorageError) for e in traffic.errors), traffic.errors[:3]
        assert not any(isinstance(e, SessionConflict) for e in traffic.errors)
        assert all(str(e).startswith("Could not") and server.url in str(e) for e in traffic.errors)
        assert sum(traffic.succeeded.values()) > before_back  # back, in this same process
        await traffic.check_sessions(runner, storage)


async def test_a_restart_that_lost_the_data_says_so_and_new_sessions_work(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis()  # no persistence: a restart starts empty
    async with RedisSessionStorage(server.url) as storage:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("before")
        await asyncio.to_thread(server.restart, kill=True)

        with pytest.raises(StorageError, match="Redis lost its data since this storage connected"):
            await runner.run("before")
        with pytest.raises(SessionNotFound):
            await runner.run("before")
        await runner.create_session("after")
        assert (await runner.run("after")).version == 2


async def test_a_flush_under_load_is_a_storage_error_and_leaves_nothing_half_written(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis()
    async with contextlib.AsyncExitStack() as stack:
        storages = [
            await stack.enter_async_context(RedisSessionStorage(server.url)) for _ in range(3)
        ]
        runners = [FlowRunner(GRAPH, storage) for storage in storages]
        for session_id in SESSIONS:
            await runners[0].create_session(session_id)
        async with StepTraffic(runners, SESSIONS, caught=CUT) as traffic:
            await asyncio.sleep(0.2)
            with server.client() as client:
                client.flushall()
            await asyncio.sleep(0.2)

        lost = [e for e in traffic.errors if "Redis lost its data" in str(e)]
        assert lost, traffic.errors[:3]
        assert all(server.url in str(e) for e in lost)
        assert all(isinstance(e, (StorageError, SessionNotFound)) for e in traffic.errors)
        with server.client() as client:  # every session left is whole
            for key in client.scan_iter(match="flowcore:{*"):
                assert set(client.hkeys(key)) >= {b"v", b"b", b"t"}, key
        await runners[1].create_session("new")
        assert (await runners[2].run("new")).version == 2


async def test_a_server_that_stops_answering_fails_the_step_instead_of_hanging_it(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis()
    async with RedisSessionStorage(server.url, command_timeout=0.3) as storage:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("s1")
        with server.client() as client:
            client.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # answers nobody for 1.5 s
        started = time.monotonic()

        with pytest.raises(StorageError, match=r"did not answer within command_timeout \(0\.3s\)"):
            await runner.run("s1")

        assert time.monotonic() - started < 1.2
        with contextlib.suppress(StorageError):  # the pause may not be over yet
            await asyncio.sleep(1.5 - (time.monotonic() - started))
        await runner.run("s1")  # a new connection, the same storage
        assert (await storage.get("s1")).version == 2  # type: ignore[union-attr]
