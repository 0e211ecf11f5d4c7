"""PostgreSQL failing under the storage: a restart in the middle of traffic, a stuck statement.

The steps a fault cuts fail with StorageError, nothing is half-written, and the same process
carries on once the fault is gone. The restart test restarts a PostgreSQL server of its own (a
new cluster in a temporary directory, on a free port; it takes a few seconds), never the shared
server that other test runs may be using.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest
from flowcore_sql import PostgresSessionStorage
from private_postgres import PrivateServer, private_server, unavailable
from sql_backends import new_schema

from flowcore import (
    Context,
    FlowRunner,
    GraphBuilder,
    NextAction,
    SessionConflict,
    StorageError,
    TaskResult,
    task,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def restartable() -> Iterator[PrivateServer]:
    """A PostgreSQL server of this test's own, which it may restart; removed afterwards."""
    problem = unavailable()
    if problem is not None:
        reason = f"needs a PostgreSQL server of its own to restart, but there is {problem}"
        if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
            pytest.fail(f"This test {reason} (FLOWCORE_REQUIRE_SERVICES is set)")
        pytest.skip(f"This test {reason}")
    with private_server() as server:
        yield server


@task("increment")
async def increment(ctx: Context) -> TaskResult:
    await asyncio.sleep(0.001)  # a step long enough to be caught in flight
    ctx.set("counter", ctx.get("counter", 0) + 1)
    return TaskResult(None, NextAction.WaitForInput)


GRAPH = GraphBuilder("counter").add_task(increment).build()
SESSIONS = [f"s{i}" for i in range(12)]


async def test_a_restart_fails_the_steps_in_flight_and_later_steps_succeed(
    restartable: PrivateServer,
) -> None:
    storage = PostgresSessionStorage(
        restartable.url, schema=new_schema(), connect_timeout=2, command_timeout=5
    )
    runner = FlowRunner(GRAPH, storage)
    succeeded: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def keep_stepping(session_id: str) -> None:
        while not stop.is_set():
            try:
                await runner.run(session_id)
                succeeded[session_id] += 1
            except StorageError as exc:  # what a cut step must raise, and nothing else
                failed[session_id] += 1
                errors.append(exc)
                await asyncio.sleep(0.02)

    async def traffic_through_a_restart() -> None:
        for session_id in SESSIONS:
            await runner.create_session(session_id)
        workers = [asyncio.create_task(keep_stepping(s)) for s in SESSIONS]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(restartable.restart)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)

    try:
        await asyncio.wait_for(traffic_through_a_restart(), timeout=90)

        assert errors, "the restart should have cut some steps"
        assert not any(isinstance(e, SessionConflict) for e in errors), errors[:3]
        for session_id in SESSIONS:
            # Later steps succeed, in this same process and storage.
            await runner.run(session_id)
            stored = await storage.get(session_id)
            assert stored is not None
            counter = stored.context.get("counter")
            # Nothing half-written: the blob and its version always moved together...
            assert stored.version == 1 + counter
            # ...and every step reported as done is stored; a cut one may or may not be.
            done = succeeded[session_id] + 1
            assert done <= counter <= done + failed[session_id]
    finally:
        stop.set()
        with contextlib.suppress(StorageError):
            await storage.close()


async def test_a_save_stuck_on_a_lock_times_out_and_is_not_stored(postgres_url: str) -> None:
    schema = new_schema()
    storage = await PostgresSessionStorage.connect(postgres_url, schema=schema, command_timeout=0.3)
    other = await asyncpg.connect(postgres_url, server_settings={"search_path": schema})
    try:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("locked")
        await other.execute("BEGIN")  # another transaction holds the session's row
        await other.execute("SELECT 1 FROM flowcore_sessions WHERE id = 'locked' FOR UPDATE")
        started = time.monotonic()

        with pytest.raises(
            StorageError, match=r"ran longer than command_timeout \(0\.3s\)"
        ) as caught:
            await runner.run("locked")  # its save waits for the row

        # The server cancelled the statement and rolled it back: the message says so, and
        # only so.
        assert "rolled the save back: nothing was stored" in str(caught.value)
        assert "may have been stored" not in str(caught.value)
        assert time.monotonic() - started < 3
        await other.execute("ROLLBACK")
        stored = await storage.get("locked")
        assert stored is not None
        assert stored.version == 1  # the step that timed out saved nothing
        await runner.run("locked")  # and the storage goes on
    finally:
        await other.close()
        await storage.close()


class FreezingProxy:
    """A TCP relay to the server that can stop relaying: a server that no longer answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    await self.flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        self.flowing.set()


async def test_a_server_that_stops_answering_fails_the_step_instead_of_hanging_it(
    postgres_url: str,
) -> None:
    if "@127.0.0.1:5432/" not in postgres_url:
        pytest.skip("relays to the local server on 127.0.0.1:5432")
    proxy = FreezingProxy(5432)
    url = postgres_url.replace(":5432/", f":{await proxy.start()}/")
    storage = await PostgresSessionStorage.connect(url, schema=new_schema(), command_timeout=0.2)
    try:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("s1")
        proxy.flowing.clear()
        started = time.monotonic()

        with pytest.raises(StorageError, match=r"did not answer within 0\.4s"):
            await runner.run("s1")

        assert time.monotonic() - started < 3
        proxy.flowing.set()
        await runner.run("s1")  # a new connection, the same storage
    finally:
        await storage.close()
        await proxy.close()
