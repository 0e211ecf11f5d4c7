"""Redis failing under the storage: a restart or a flush in the middle of traffic, a stuck server.

The steps a fault cuts fail with StorageError naming the URL, nothing is half-written, and the
same process carries on once the server is back. Each test runs a redis-server of its own (on a
free port, in a temporary directory), never the shared one other test runs are using.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable

import pytest
from flowcore_redis import RedisSessionStorage
from redis_servers import PrivateRedis

from flowcore import (
    Context,
    FlowRunner,
    GraphBuilder,
    NextAction,
    SessionConflict,
    SessionNotFound,
    StorageError,
    TaskResult,
    task,
)

pytestmark = pytest.mark.slow


@task("increment")
async def increment(ctx: Context) -> TaskResult:
    await asyncio.sleep(0.001)  # a step long enough to be caught in flight
    ctx.set("counter", ctx.get("counter", 0) + 1)
    return TaskResult(None, NextAction.WaitForInput)


GRAPH = GraphBuilder("counter").add_task(increment).build()
SESSIONS = [f"s{i}" for i in range(12)]


class Traffic:
    """Runners stepping every session over and over, counting what succeeded and what failed."""

    def __init__(self, runners: list[FlowRunner]) -> None:
        self.runners = runners
        self.succeeded: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.stop = asyncio.Event()
        self.workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.workers = [
            asyncio.create_task(self._keep_stepping(self.runners[i % len(self.runners)], s))
            for i, s in enumerate(SESSIONS)
        ]

    async def _keep_stepping(self, runner: FlowRunner, session_id: str) -> None:
        while not self.stop.is_set():
            try:
                await runner.run(session_id)
                self.succeeded[session_id] += 1
            except (StorageError, SessionNotFound) as exc:  # what a cut step may raise
                self.failed[session_id] += 1
                self.errors.append(exc)
                await asyncio.sleep(0.02)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.workers)


async def test_a_restart_fails_the_steps_in_flight_and_later_steps_succeed(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    # Persistence as a deployment that keeps sessions across restarts has it: every write is
    # in the append-only file before Redis answers it.
    server = private_redis("--appendonly", "yes", "--appendfsync", "always")
    storage = RedisSessionStorage(server.url, connect_timeout=1, command_timeout=5)
    runner = FlowRunner(GRAPH, storage)
    traffic = Traffic([runner])
    try:
        for session_id in SESSIONS:
            await runner.create_session(session_id)
        traffic.start()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.restart, kill=True)  # a crash, then a new start
        before_back = sum(traffic.succeeded.values())
        await asyncio.sleep(0.5)
        await traffic.finish()

        assert traffic.errors, "the restart should have cut some steps"
        assert all(isinstance(e, StorageError) for e in traffic.errors), traffic.errors[:3]
        assert not any(isinstance(e, SessionConflict) for e in traffic.errors)
        assert all(str(e).startswith("Could not") and server.url in str(e) for e in traffic.errors)
        assert sum(traffic.succeeded.values()) > before_back  # back, in this same process
        for session_id in SESSIONS:
            await runner.run(session_id)
            stored = await storage.get(session_id)
            assert stored is not None
            counter = stored.context.get("counter")
            # Nothing half-written: the blob and its version always moved together...
            assert stored.version == 1 + counter
            # ...and every step reported as done is stored; a cut one may or may not be.
            done = traffic.succeeded[session_id] + 1
            assert done <= counter <= done + traffic.failed[session_id]
    finally:
        await traffic.finish()
        await storage.close()


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
    storages = [RedisSessionStorage(server.url) for _ in range(3)]
    runners = [FlowRunner(GRAPH, storage) for storage in storages]
    traffic = Traffic(runners)
    try:
        for session_id in SESSIONS:
            await runners[0].create_session(session_id)
        traffic.start()
        await asyncio.sleep(0.2)
        with server.client() as client:
            client.flushall()
        await asyncio.sleep(0.2)
        await traffic.finish()

        lost = [e for e in traffic.errors if "Redis lost its data" in str(e)]
        assert lost, traffic.errors[:3]
        assert all(server.url in str(e) for e in lost)
        assert all(isinstance(e, (StorageError, SessionNotFound)) for e in traffic.errors)
        with server.client() as client:  # every session left is whole
            for key in client.scan_iter(match="flowcore:{*"):
                assert set(client.hkeys(key)) >= {b"v", b"b", b"t"}, key
        await runners[1].create_session("new")
        assert (await runners[2].run("new")).version == 2
    finally:
        await traffic.finish()
        for storage in storages:
            await storage.close()


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
