"""Migrations: an ordered list, a version table, applied once, all or nothing, on both backends."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from flowcore_sql import MIGRATIONS, Migration, PostgresSessionStorage, SqlSessionStorage, _migrate
from flowcore_sql._schema import sessions
from sql_backends import Backend, new_schema
from sqlalchemy.dialects import postgresql, sqlite

from flowcore import Session, StorageError


@pytest.fixture
async def empty(backend: Backend) -> Backend:
    """The backend, on a database that has never seen flowcore (PostgreSQL: a new schema)."""
    await backend.use_new_schema()
    return backend


async def applied(backend: Backend) -> list[tuple[int, str]]:
    rows = await backend.fetch("SELECT version, description FROM flowcore_migrations")
    return sorted((row[0], row[1]) for row in rows)


def test_migrations_are_numbered_from_one_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(isinstance(m, Migration) and m.description for m in MIGRATIONS)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=repr)
def test_a_migration_shows_its_sql_for_a_dba(dialect: sa.engine.Dialect) -> None:
    statements = MIGRATIONS[0].sql(dialect)

    assert statements[0].startswith("CREATE TABLE flowcore_sessions (")
    assert "expires_at" in statements[1]


async def test_connecting_applies_every_migration_once(empty: Backend) -> None:
    storage = await empty.open()

    assert await applied(empty) == [(m.version, m.description) for m in MIGRATIONS]
    assert await storage.migrate() == []  # nothing left to do
    await storage.save(Session.new_from_task("s1", "start"))


async def test_with_migrate_false_the_storage_says_what_to_do(empty: Backend) -> None:
    storage = await empty.open(migrate=False)

    with pytest.raises(StorageError, match=r"tables are missing: run `await storage.migrate\(\)`"):
        await storage.get("s1")

    assert await storage.migrate() == [m.version for m in MIGRATIONS]
    assert await storage.get("s1") is None


async def test_the_migrated_tables_are_the_ones_the_code_uses(empty: Backend) -> None:
    await empty.open()

    columns = await empty.columns("flowcore_sessions")

    assert columns == {column.name: column.nullable for column in sessions.columns}


async def test_storages_starting_together_apply_each_migration_once(empty: Backend) -> None:
    storages = [empty.storage() for _ in range(6)]

    await asyncio.gather(*(storage.__aenter__() for storage in storages))

    assert await applied(empty) == [(m.version, m.description) for m in MIGRATIONS]


async def test_a_failing_migration_leaves_nothing_behind(
    empty: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    half_way = (sa.text("CREATE TABLE half_way (x INT)"), sa.text("NOT SQL"))
    broken = Migration(2, "A migration that fails half way", half_way)  # type: ignore[arg-type]
    monkeypatch.setattr(_migrate, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(StorageError, match="Could not apply the migrations"):
        await empty.open()

    # One transaction: not even migration 1 stayed.
    assert await empty.tables() == set()


async def test_without_prepared_statements_steps_leave_none_on_the_server(
    postgres_url: str,
) -> None:
    # What a pooler in transaction mode needs: no statement of ours is prepared by name.
    async def prepared_by_steps(**options: object) -> list[str]:
        async with PostgresSessionStorage(
            postgres_url, schema=new_schema(), pool_size=1, max_overflow=0, **options
        ) as storage:
            session = Session.new_from_task("s1", "start")
            await storage.save(session)
            await storage.save(session)
            assert await storage.get("s1") is not None
            lease = storage._idle[0]  # the one connection the steps used
            rows = await lease.driver.fetch("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in rows if "flowcore_sessions" in row[0]]

    assert await prepared_by_steps() != []  # by default asyncpg keeps them prepared
    assert await prepared_by_steps(prepared_statements=False) == []


async def test_a_schema_of_its_own_is_created_when_missing(postgres_url: str) -> None:
    schema = new_schema()
    storage = await PostgresSessionStorage.connect(postgres_url, schema=schema)
    try:
        assert storage.schema == schema
        await storage.save(Session.new_from_task("s1", "start"))
        assert await storage.get("s1") is not None
    finally:
        await storage.close()


def test_sql_storage_is_abstract() -> None:
    with pytest.raises(TypeError):
        SqlSessionStorage("sqlite:///x.db", ttl=None, migrate=True)  # type: ignore[abstract]
