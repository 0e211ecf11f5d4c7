"""The databases flowcore-sql's tests run against, and how a test reads them behind the storage.

PostgreSQL is the server at ``FLOWCORE_TEST_POSTGRES_URL`` (default: the local one,
``postgresql://postgres@127.0.0.1:5432/test``). A test run keeps its tables in schemas of its
own, named after the run and dropped at its end, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from flowcore_sql import PostgresSessionStorage, SqliteSessionStorage, SqlSessionStorage

POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RUN_SCHEMA = f"flowcore_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
"""This run's schema; other schemas of the run start with it too."""

BACKENDS = ("sqlite", "postgresql")


def run_sync(coroutine: Any) -> Any:
    """Run a coroutine on a loop of its own (outside the tests' loops)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


async def drop_run_schemas() -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        names = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", RUN_SCHEMA
        )
        for (name,) in names:
            await connection.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await connection.close()


def server_started_at() -> Any:
    """When the shared server last started: a test that restarted it would change this."""

    async def query() -> Any:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            return await connection.fetchval("SELECT pg_postmaster_start_time()")
        finally:
            await connection.close()

    return run_sync(query())


def unreachable() -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        run_sync(probe())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def new_schema() -> str:
    """A schema name of this run that no other test uses."""
    return f"{RUN_SCHEMA}_{uuid.uuid4().hex[:8]}"


class Backend:
    """One database for one test: opens storages on it and reads its rows behind their back."""

    def __init__(self, name: str, tmp_path: Path, postgres_url: str | None) -> None:
        self.name = name
        self.path = tmp_path / "sessions.db"
        self.postgres_url = postgres_url
        self.schema = RUN_SCHEMA
        self._storages: list[SqlSessionStorage] = []
        self._raw: asyncpg.Connection | None = None

    @property
    def url(self) -> str:
        """The URL ``open_storage`` takes for this database."""
        return f"sqlite:///{self.path}" if self.name == "sqlite" else str(self.postgres_url)

    def storage(self, **options: Any) -> SqlSessionStorage:
        """A storage on this database, not yet connected; closed at the end of the test."""
        storage: SqlSessionStorage
        if self.name == "sqlite":
            storage = SqliteSessionStorage(self.path, **options)
        else:
            options.setdefault("schema", self.schema)
            storage = PostgresSessionStorage(str(self.postgres_url), **options)
        self._storages.append(storage)
        return storage

    async def open(self, **options: Any) -> SqlSessionStorage:
        """A connected storage on this database."""
        storage = self.storage(**options)
        await storage.__aenter__()
        return storage

    async def use_new_schema(self) -> None:
        """Move to a schema of its own (PostgreSQL), that no other test has used."""
        self.schema = new_schema()
        if self._raw is not None:
            await self._raw.close()
            self._raw = None

    async def empty(self) -> None:
        """Remove the rows earlier tests of this run left in the shared PostgreSQL schema."""
        if self.name == "postgresql":
            with contextlib.suppress(asyncpg.UndefinedTableError):  # the run's first test
                await self.execute("DELETE FROM flowcore_sessions")

    async def execute(self, sql: str, *args: Any) -> None:
        """Run ``sql`` straight on the database (SQLite ``?`` or PostgreSQL ``$1`` parameters)."""
        if self.name == "sqlite":
            with sqlite3.connect(self.path) as connection:
                connection.execute(sql, args)
            connection.close()
        else:
            await (await self._connection()).execute(sql, *args)

    async def row(self, session_id: str) -> dict[str, Any] | None:
        """The session's row as stored, expired or not."""
        if self.name == "sqlite":
            with sqlite3.connect(self.path) as connection:
                connection.row_factory = sqlite3.Row
                found = connection.execute(
                    "SELECT * FROM flowcore_sessions WHERE id = ?", (session_id,)
                ).fetchone()
            connection.close()
        else:
            found = await (await self._connection()).fetchrow(
                "SELECT * FROM flowcore_sessions WHERE id = $1", session_id
            )
        return None if found is None else dict(found)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """The rows ``sql`` returns, run straight on the database."""
        if self.name == "sqlite":
            with sqlite3.connect(self.path) as connection:
                rows = connection.execute(sql, args).fetchall()
            connection.close()
            return rows
        return [tuple(row) for row in await (await self._connection()).fetch(sql, *args)]

    async def tables(self) -> set[str]:
        """The tables in the database (PostgreSQL: in the backend's schema)."""
        if self.name == "sqlite":
            rows = await self.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = await self.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                self.schema,
            )
        return {row[0] for row in rows}

    async def columns(self, table: str) -> dict[str, bool]:
        """``{column name: nullable}`` of ``table``."""
        if self.name == "sqlite":
            rows = await self.fetch(
                f"SELECT name, NOT \"notnull\" FROM pragma_table_info('{table}')"
            )
        else:
            rows = await self.fetch(
                "SELECT column_name, is_nullable = 'YES' FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2",
                self.schema,
                table,
            )
        return {row[0]: bool(row[1]) for row in rows}

    async def indexes(self, table: str) -> set[str]:
        """The names of the indexes of ``table`` that were made by name (not the primary key's)."""
        if self.name == "sqlite":
            rows = await self.fetch(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                table,
            )
        else:
            rows = await self.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 "
                "AND indexname <> $2 || '_pkey'",
                self.schema,
                table,
            )
        return {row[0] for row in rows}

    async def put_row(self, session_id: str, version: int, blob: bytes) -> None:
        """Store ``blob`` under ``session_id`` as is, bypassing ``save``."""
        placeholders = (
            "?, 'g', 't', false, ?, ?, '2024-01-01', '2024-01-01', false"
            if self.name == "sqlite"
            else "$1, 'g', 't', false, $2, $3, now(), now(), false"
        )
        await self.execute(
            "INSERT INTO flowcore_sessions (id, graph_id, current_task_id, is_completed, version, "
            f"blob, created_at, updated_at, own_expiry) VALUES ({placeholders})",
            session_id,
            version,
            blob,
        )

    async def _connection(self) -> asyncpg.Connection:
        if self._raw is None:
            self._raw = await asyncpg.connect(
                str(self.postgres_url), server_settings={"search_path": self.schema}
            )
        return self._raw

    async def close(self) -> None:
        for storage in self._storages:
            await storage.close()
        if self._raw is not None:
            await self._raw.close()
