"""The PostgreSQL storage's connections: leased from SQLAlchemy's pool and kept between statements.

A step's statements go straight to the asyncpg connection under a lease. Keeping the idle leases
(up to ``pool_size``) spares a pool checkout per statement; never holding more than ``pool_size +
max_overflow`` means never waiting on SQLAlchemy's pool: a statement that finds none free waits
here, for the next one released, up to ``pool_timeout``.

A watchdog closes a connection whose statement has gone unanswered for too long, so a server
that stops answering fails the statement with a TimeoutError instead of hanging it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, Literal

import asyncpg
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["Lease", "Leases"]


class Lease:
    """A connection checked out of SQLAlchemy's pool, and the asyncpg connection under it."""

    __slots__ = ("busy_since", "connection", "driver", "since", "timed_out")

    def __init__(self, connection: AsyncConnection, driver: asyncpg.Connection) -> None:
        self.connection = connection
        self.driver = driver
        self.since = time.monotonic()
        self.busy_since = 0.0
        self.timed_out = False


class Leases:
    """The connections one storage leases from its engine's pool, and the statements on them.

    ``watch_limit``: seconds a statement may go unanswered before its connection is closed
    (None: no watchdog); ``command_timeout`` is named in the error that says so.
    """

    def __init__(
        self,
        *,
        pool_size: int,
        max_overflow: int,
        pool_timeout: float,
        pool_recycle: float,
        command_timeout: float | None,
        watch_limit: float | None,
    ) -> None:
        self.pool_size = pool_size
        self.capacity = pool_size + max_overflow
        self.pool_timeout = pool_timeout
        self.pool_recycle = pool_recycle
        self.command_timeout = command_timeout
        self.watch_limit = watch_limit
        self.engine: AsyncEngine | None = None
        self.closed = False
        self._idle: list[Lease] = []  # leased from the pool, free for a statement
        self._leased = 0  # leased from the pool, idle or in use
        self._waiters: collections.deque[asyncio.Future[Lease | None]] = collections.deque()
        self._busy: set[Lease] = set()  # running a statement, watched for command_timeout
        self._watchdog: asyncio.TimerHandle | None = None

    async def open(self, engine: AsyncEngine) -> None:
        """Lease from ``engine``'s pool, and watch the statements; connect once, to fail now
        if it cannot."""
        self.engine = engine
        if self.watch_limit is not None:
            self._watch()
        try:
            await self.release(await self.acquire())
        except BaseException:
            self.engine = None
            self._stop_watching()
            raise

    async def close(self) -> None:
        """Close the idle connections; those in use close when released."""
        self.closed = True
        self._stop_watching()
        idle, self._idle = self._idle, []
        for lease in idle:
            with contextlib.suppress(Exception):
                await lease.connection.close()

    # -- statements --------------------------------------------------------------------------------

    async def run(self, sql: str, args: Any, fetch: Literal["row", "rows", "status"]) -> Any:
        """Run ``sql`` on an idle connection: fetch its first row, all its rows, or its status."""
        idle = self._idle
        lease = idle.pop() if idle else None
        if lease is None or lease.driver.is_closed():
            lease = await self.acquire(lease)
        self.busy(lease)
        result: Any
        try:
            if fetch == "row":
                result = await lease.driver.fetchrow(sql, *args)
            elif fetch == "rows":
                result = await lease.driver.fetch(sql, *args)
            else:
                result = await lease.driver.execute(sql, *args)
        except BaseException as exc:
            await self.failed(lease, exc)
            raise
        self._busy.discard(lease)
        if (
            idle is self._idle
            and len(idle) < self.pool_size
            and self.pool_recycle < 0
            and not self._waiters
            and not self.closed
        ):
            idle.append(lease)  # the usual case, without a coroutine call
        else:
            await self.release(lease)
        return result

    def busy(self, lease: Lease) -> None:
        """Watch ``lease``'s statement from now on."""
        lease.busy_since = time.monotonic()
        self._busy.add(lease)

    def done(self, lease: Lease) -> None:
        """``lease``'s statement has answered."""
        self._busy.discard(lease)

    async def failed(self, lease: Lease, exc: BaseException) -> None:
        """Drop ``lease``, whose statement failed with ``exc`` (and, when the server went away,
        the idle connections with it); a TimeoutError when the watchdog closed it."""
        self._busy.discard(lease)
        lost = lease.driver.is_closed()
        await self._discard(lease)
        if lost:  # the server went away: the idle connections went with it
            idle, self._idle = self._idle, []
            for other in idle:
                await self._discard(other)
        if lease.timed_out:
            raise TimeoutError(
                f"the server did not answer within {self.watch_limit:g}s (command_timeout="
                f"{self.command_timeout:g}s), so the connection was closed"
            ) from exc

    # -- leasing -----------------------------------------------------------------------------------

    async def acquire(self, closed: Lease | None = None) -> Lease:
        """A connection for one statement: an idle one, a new one, or the next one released.

        ``closed``: an idle connection just found closed, to drop first.
        """
        if closed is not None:
            await self._discard(closed)
        idle = self._idle
        while idle:
            lease = idle.pop()
            if not lease.driver.is_closed():
                return lease
            # A server restart closes every connection; asyncpg notices when it reads the
            # server's goodbye, so a closed one is dropped here instead of failing a step.
            await self._discard(lease)
        if self._leased < self.capacity:
            self._leased += 1
            return await self._lease()
        return await self._wait()

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back: to a waiting statement, to the idle ones, or to the pool."""
        if self._hand_over(lease):
            return
        if (
            not self.closed
            and len(self._idle) < self.pool_size
            and not (0 <= self.pool_recycle < time.monotonic() - lease.since)
        ):
            self._idle.append(lease)
            return
        self._free_slot()
        with contextlib.suppress(Exception):
            await lease.connection.close()  # back to SQLAlchemy's pool, which may close it

    async def _lease(self) -> Lease:
        """A connection from SQLAlchemy's pool, for a slot already counted in ``_leased``."""
        assert self.engine is not None
        try:
            for _ in range(self.capacity + 1):  # skip the pool's connections a restart closed
                connection = await self.engine.connect()
                try:
                    raw = await connection.get_raw_connection()
                except BaseException:
                    await connection.close()
                    raise
                driver = raw.driver_connection
                if driver is None:
                    await connection.close()
                    raise ConnectionError("SQLAlchemy's pool gave a connection with no driver")
                lease = Lease(connection, driver)
                if not lease.driver.is_closed():
                    return lease
                await _invalidate(lease)
            raise ConnectionError("every connection in the pool was closed")
        except BaseException:
            self._free_slot()
            raise

    async def _wait(self) -> Lease:
        waiter: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            lease = await asyncio.wait_for(waiter, self.pool_timeout)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # handed over just as time ran out
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    await self.release(handed)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
                raise PoolTimeout(
                    f"no connection was free within pool_timeout ({self.pool_timeout:g}s)"
                ) from None
            raise
        if lease is None:  # a slot, freed by a connection that broke: connect anew
            return await self._lease()
        return lease

    def _hand_over(self, lease: Lease | None) -> bool:
        """Give ``lease`` (or a free slot, None) to the first waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(lease)
                return True
        return False

    def _free_slot(self) -> None:
        if not self._hand_over(None):
            self._leased -= 1

    async def _discard(self, lease: Lease) -> None:
        self._free_slot()
        await _invalidate(lease)

    # -- the watchdog ------------------------------------------------------------------------------

    def _watch(self) -> None:
        """Close the connections whose statement has gone unanswered for too long.

        One timer per storage, rather than asyncpg's one per statement, which would cost a
        step more than the check does.
        """
        limit = self.watch_limit
        assert limit is not None
        now = time.monotonic()
        for lease in list(self._busy):
            if now - lease.busy_since > limit and not lease.timed_out:
                lease.timed_out = True
                lease.driver.terminate()  # the statement fails at once; run says why
        interval = min(1.0, limit / 10)
        self._watchdog = asyncio.get_running_loop().call_later(interval, self._watch)

    def _stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


async def _invalidate(lease: Lease) -> None:
    """Close a connection whose state is unknown, and tell SQLAlchemy's pool it is gone."""
    lease.driver.terminate()  # at once
    with contextlib.suppress(Exception):
        await lease.connection.invalidate()
    with contextlib.suppress(Exception):
        await lease.connection.close()
