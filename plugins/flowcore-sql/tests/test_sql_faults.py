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
from collections.abc import Iterator

import asyncpg
import pytest
from flowcore_sql import PostgresSessionStorage
from private_postgres import PrivateServer, private_server, unavailable
from sql_backends import new_schema

from flowcore import FlowRunner, SessionConflict, StorageError
from flowcore.testing import StepTraffic, counter_graph

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


GRAPH = counter_graph(step_seconds=0.001)  # a step long enough to be caught in flight
SESSIONS = [f"s{i}" for i in range(12)]


async def test_a_restart_fails_the_steps_in_flight_and_later_steps_succeed(
    restartable: PrivateServer,
) -> None:
    storage = PostgresSessionStorage(
        restartable.url, schema=new_schema(), connect_timeout=2, command_timeout=5
    )
    runner = FlowRunner(GRAPH, storage)

    async def traffic_through_a_restart() -> StepTraffic:
        for session_id in SESSIONS:
            await runner.create_session(session_id)
        async with StepTraffic([runner], SESSIONS) as traffic:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(restartable.restart)
            await asyncio.sleep(0.5)
        return traffic

    try:
        traffic = await asyncio.wait_for(traffic_through_a_restart(), timeout=90)

        assert traffic.errors, "the restart should have cut some steps"
        assert not any(isinstance(e, SessionConflict) for e in traffic.errors), traffic.errors[:3]
        # Later steps succeed, in this same process and storage.
        await traffic.check_sessions(runner, storage)
    finally:
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
