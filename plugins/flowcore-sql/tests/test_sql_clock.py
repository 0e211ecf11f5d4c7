"""Expiry is judged by the database's clock, not by the clock of whichever client runs.

flowcore's clock-skew suite runs a client process under ``faketime`` with its clock two hours
ahead, against the real PostgreSQL server, while this process (and the server) keep the true
time: a session with an hour left stays live (visible, listed, not replaced by a create and not
deleted by a cleanup), the expiries it sets count from the server's now, and a session that
waits for a time an hour away is not yet due.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from flowcore_sql import PostgresSessionStorage
from sql_backends import new_schema

from flowcore import Session, SessionStorage
from flowcore.testing import ClockSkewConformance

SET_EXPIRY = textwrap.dedent(
    """
    import asyncio, os
    from flowcore import open_storage

    async def main():
        async with open_storage(os.environ["FLOWCORE_TEST_STORAGE_URL"]) as storage:
            await storage.set_expiry("other", 600)

    asyncio.run(main())
    """
)


class TestPostgresClockSkew(ClockSkewConformance):
    load_plugins = "sql"

    @pytest.fixture
    def schema(self) -> str:
        return new_schema()

    @pytest.fixture
    async def storage(
        self, postgres_url: str, schema: str
    ) -> AsyncIterator[PostgresSessionStorage]:
        opened = PostgresSessionStorage(postgres_url, schema=schema, ttl=self.ttl)
        async with opened:
            yield opened

    @pytest.fixture
    def storage_url(self, postgres_url: str, schema: str) -> str:
        return f"{postgres_url}?schema={schema}&ttl={int(self.ttl)}"

    async def expiry_of(self, storage: SessionStorage, session_id: str) -> datetime | None:
        assert isinstance(storage, PostgresSessionStorage)
        return await storage.get_expiry(session_id)

    async def plant_expired(self, storage: SessionStorage) -> str | None:
        assert isinstance(storage, PostgresSessionStorage)
        await storage.save(Session.new_from_task("dead", "start"))
        await storage.set_expiry("dead", -1)  # expired a second ago, by the server's clock
        return "dead"

    async def test_an_expiry_a_client_ahead_sets_counts_from_the_servers_now(
        self, storage: PostgresSessionStorage, storage_url: str, faketime: str
    ) -> None:
        await storage.save(Session.new_from_task("other", "start"))

        done = self.run_ahead(
            faketime, sys.executable, "-c", SET_EXPIRY, FLOWCORE_TEST_STORAGE_URL=storage_url
        )

        assert done.returncode == 0, done.stderr
        expires = await storage.get_expiry("other")
        assert expires is not None
        now = datetime.now(timezone.utc)
        assert abs(expires - (now + timedelta(seconds=600))) < timedelta(minutes=1)
