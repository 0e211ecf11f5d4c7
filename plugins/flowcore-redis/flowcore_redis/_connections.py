"""Connections leased from redis-py's pool, each running one command or pipeline at a time.

A step's load and save are one command each. Measured on loopback, redis-py's client spends more
time around a command (taking a connection from its pool under a lock, checking it, a task and a
timer per command for its socket timeout) than the round trip itself; here the storage keeps the
connections it leased from the pool and sends each command straight on one, as redis-py's own
pipelines do. redis-py still makes every connection (TCP, TLS or Unix socket, authentication,
database), and its parser reads every reply.

The limits hold without a timer per command: one watchdog per storage closes a connection whose
command has gone unanswered for ``command_timeout``, which fails that command at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

__all__ = [
    "ClusterCommands",
    "Command",
    "CommandTimeout",
    "Connections",
    "PoolTimeout",
    "Transport",
    "pack",
]

Command = tuple[bytes, ...]
"""A command and its arguments, e.g. ``(b"HMGET", key, b"v", b"b")``."""

Reply = Any
"""A reply as redis-py's parser reads it: bytes, int, None, a list of replies, or for an
error reply the ResponseError it makes (returned, not raised)."""


class CommandTimeout(TimeoutError):
    """The server did not answer a command within ``command_timeout``."""


class PoolTimeout(TimeoutError):
    """No connection was free within ``pool_timeout``."""


def pack(*args: bytes) -> list[bytes]:
    """One command in Redis's protocol (RESP), as chunks to send in order; a large argument (a
    blob) is sent as it is rather than copied."""
    head = b"*%d\r\n" % len(args)
    chunks: list[bytes] = []
    for arg in args:
        if len(arg) > 16_384:
            chunks += (head + b"$%d\r\n" % len(arg), arg)
            head = b"\r\n"
        else:
            head += b"$%d\r\n%s\r\n" % (len(arg), arg)
    chunks.append(head)
    return chunks


class Connections:
    """Up to ``size`` connections from ``pool``, for one storage on one event loop."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        size: int,
        pool_timeout: float,
        connect_timeout: float | None,
        command_timeout: float | None,
        owns_pool: bool,
    ) -> None:
        self.pool = pool
        self.size = size
        self.pool_timeout = pool_timeout
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._owns_pool = owns_pool
        self._idle: list[AbstractConnection] = []
        self._leased = 0  # connections taken from the pool, idle or in use
        self._waiters: collections.deque[asyncio.Future[AbstractConnection | None]] = (
            collections.deque()
        )
        self._busy: dict[AbstractConnection, float] = {}  # running a command, since
        self._timed_out: set[AbstractConnection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        # redis-py 5.0 to 5.2 require a command name here; later ones warn when given one.
        parameters = inspect.signature(pool.get_connection).parameters
        name = parameters.get("command_name")
        self._needs_name = name is not None and name.default is inspect.Parameter.empty

    # -- running commands ----------------------------------------------------------------------

    async def run(self, commands: Sequence[Command]) -> tuple[list[Reply], bool]:
        """Send ``commands`` at once on one connection; their replies, and whether they were
        sent a second time.

        A connection kept idle may have been closed by the server meanwhile (a restart): when
        one fails, every idle one is dropped and the commands are sent once more on a new
        connection. So every command sent must be one that may run twice.
        """
        if len(commands) == 1:
            chunks = pack(*commands[0])
        else:
            chunks = [chunk for command in commands for chunk in pack(*command)]
        replies = len(commands)
        idle = self._idle
        again = False
        if idle:
            try:
                return await self._exchange(idle.pop(), chunks, replies), False
            except CommandTimeout:
                raise  # the server is there but stuck: sending again would wait as long
            except (RedisConnectionError, OSError):
                await self._drop_idle()
                again = True
        connection = await self._acquire()
        return await self._exchange(connection, chunks, replies), again

    async def _exchange(
        self, connection: AbstractConnection, chunks: Sequence[bytes], count: int
    ) -> list[Reply]:
        busy = self._busy
        busy[connection] = time.monotonic()
        try:
            await connection.send_packed_command(chunks, check_health=False)
            received: list[Reply] = []
            for _ in range(count):
                try:
                    received.append(await connection.read_response())
                except ResponseError as exc:  # an error reply: the connection is fine
                    received.append(exc)
        except BaseException as exc:
            del busy[connection]
            timed_out = connection in self._timed_out
            await self._discard(connection)
            if timed_out:
                raise CommandTimeout(
                    f"the server did not answer within command_timeout "
                    f"({self.command_timeout:g}s), so the connection was closed"
                ) from exc
            raise
        del busy[connection]
        if self._waiters or self._closed:
            await self._release(connection)
        else:
            self._idle.append(connection)  # the usual case, without a coroutine call
        return received

    # -- leasing -------------------------------------------------------------------------------

    async def _acquire(self) -> AbstractConnection:
        """A connection of the pool's: a new one, or the next one released."""
        if self._closed:
            raise RedisConnectionError("the storage is closed")
        if self._leased < self.size:
            self._leased += 1
            try:
                return await self._connect()
            except BaseException:
                self._free_slot()
                raise
        return await self._wait()

    async def _connect(self) -> AbstractConnection:
        if self._watchdog is None and self.command_timeout is not None:
            self._watch()
        get: Callable[..., Awaitable[AbstractConnection]] = self.pool.get_connection
        taking = get("_") if self._needs_name else get()
        if self.connect_timeout is None:
            return await taking
        # The pool connects, authenticates and selects the database: all of it within the limit.
        try:
            return await asyncio.wait_for(taking, self.connect_timeout * 2)
        except asyncio.TimeoutError:
            raise RedisConnectionError(
                f"no connection within {self.connect_timeout * 2:g}s (twice connect_timeout)"
            ) from None

    async def _wait(self) -> AbstractConnection:
        # A timer rather than asyncio.wait_for, which would make a task per wait: with more
        # steps at once than connections, waiting is what most commands do.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AbstractConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.pool_timeout, self._expire, waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                late = waiter.result()  # handed over just as the waiting task was cancelled
                if late is None:
                    self._free_slot()
                else:
                    await self._release(late)
            raise
        finally:
            timer.cancel()
        if handed is None:  # a slot, freed by a connection that broke: connect anew
            try:
                return await self._connect()
            except BaseException:
                self._free_slot()
                raise
        return handed

    def _expire(self, waiter: asyncio.Future[AbstractConnection | None]) -> None:
        if not waiter.done():  # a waiter that is done is skipped when a connection is free
            waiter.set_exception(
                PoolTimeout(f"no connection was free within pool_timeout ({self.pool_timeout:g}s)")
            )

    def _hand_over(self, connection: AbstractConnection | None) -> bool:
        """Give ``connection`` (or a free slot, None) to the first waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    def _free_slot(self) -> None:
        if not self._hand_over(None):
            self._leased -= 1

    async def _release(self, connection: AbstractConnection) -> None:
        if self._hand_over(connection):
            return
        if not self._closed:
            self._idle.append(connection)
            return
        self._leased -= 1
        with contextlib.suppress(Exception):
            await self.pool.release(connection)

    async def _discard(self, connection: AbstractConnection) -> None:
        """Close a connection whose state is unknown and give it back to the pool."""
        self._timed_out.discard(connection)
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self.pool.release(connection)
        self._free_slot()

    async def _drop_idle(self) -> None:
        """The server went away: the idle connections went with it."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._discard(connection)

    # -- limits --------------------------------------------------------------------------------

    def _watch(self) -> None:
        """Close the connections whose command has gone unanswered for too long.

        One timer per storage, rather than one per command, which would cost a step more than
        the check does.
        """
        limit = self.command_timeout
        assert limit is not None
        now = time.monotonic()
        for connection, since in list(self._busy.items()):
            if now - since > limit and connection not in self._timed_out:
                self._timed_out.add(connection)
                closing = asyncio.ensure_future(connection.disconnect(nowait=True))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        interval = min(1.0, limit / 10)
        self._watchdog = asyncio.get_running_loop().call_later(interval, self._watch)

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Give every connection back (closing the pool if the storage made it)."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError("the storage was closed"))
        idle, self._idle = self._idle, []
        for connection in idle:
            self._leased -= 1
            with contextlib.suppress(Exception):
                await self.pool.release(connection)
        if self._owns_pool:
            with contextlib.suppress(Exception):
                await self.pool.disconnect()


class ClusterCommands:
    """Commands through an application's ``redis.asyncio.RedisCluster``, which sends each to
    the node that serves its key's slot (a pipeline, to each node its own).

    The client's own settings apply (its timeouts, and its retries after a broken connection,
    which the save's token makes safe: see ``_scripts.SAVE``); the storage's ``pool_size``,
    ``pool_timeout`` and ``command_timeout`` do not.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    async def run(self, commands: Sequence[Command]) -> tuple[list[Reply], bool]:
        # The cluster client finds a command's keys by its name, which it reads as text.
        if len(commands) == 1:
            name, *arguments = commands[0]
            try:
                return [await self.client.execute_command(name.decode(), *arguments)], False
            except ResponseError as exc:
                return [exc], False
        async with self.client.pipeline(transaction=False) as pipe:
            for name, *arguments in commands:
                pipe.execute_command(name.decode(), *arguments)
            return list(await pipe.execute(raise_on_error=False)), False

    async def close(self) -> None:
        """Nothing: the client is the application's, which closes it."""


Transport = Connections | ClusterCommands
"""How a storage sends its commands."""
