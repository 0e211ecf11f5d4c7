"""Migrations: an ordered list, a version table, applied once, all or nothing, on both backends."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from flowcore_sql import MIGRATIONS, Migration, PostgresSessionStorage, SqlSessionStorage, _migrate
from flowcore_sql._schema import WAKE_AT_INDEX, migrations, sessions
from sql_backends import Backend, new_schema
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from flowcore import Session, StorageError
from flowcore.codec import encode_session

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


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

    add_column, index = MIGRATIONS[1].sql(dialect)
    timestamp = "TIMESTAMP WITH TIME ZONE" if dialect.name == "postgresql" else "DATETIME"
    assert add_column == f"ALTER TABLE flowcore_sessions ADD COLUMN wake_at {timestamp}"
    id_by_code_point = 'id COLLATE "C"' if dialect.name == "postgresql" else "id"
    assert index == (
        f"CREATE INDEX {WAKE_AT_INDEX} ON flowcore_sessions (wake_at, {id_by_code_point}) "
        "WHERE wake_at IS NOT NULL"
    )


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
    assert await empty.indexes("flowcore_sessions") == {index.name for index in sessions.indexes}


async def test_storages_starting_together_apply_each_migration_once(empty: Backend) -> None:
    storages = [empty.storage() for _ in range(6)]

    await asyncio.gather(*(storage.__aenter__() for storage in storages))

    assert await applied(empty) == [(m.version, m.description) for m in MIGRATIONS]


async def test_a_failing_migration_leaves_nothing_behind(
    empty: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    half_way = (sa.text("CREATE TABLE half_way (x INT)"), sa.text("NOT SQL"))
    broken = Migration(  # type: ignore[arg-type]
        len(MIGRATIONS) + 1, "A migration that fails half way", half_way
    )
    monkeypatch.setattr(_migrate, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(StorageError, match="Could not apply the migrations"):
        await empty.open()

    # One transaction: not even migration 1 stayed.
    assert await empty.tables() == set()


# -- from the previous schema ----------------------------------------------------------------------


async def make_version_1(backend: Backend) -> None:
    """The database as a flowcore-sql with migration 1 only left it, holding one session."""
    dialect = sqlite.dialect() if backend.name == "sqlite" else postgresql.dialect()
    if backend.name == "postgresql":
        await backend.execute(f'CREATE SCHEMA "{backend.schema}"')
    for statement in [
        *MIGRATIONS[0].sql(dialect),
        str(CreateTable(migrations).compile(dialect=dialect)),
    ]:
        await backend.execute(statement)
    await backend.execute(
        f"INSERT INTO flowcore_migrations VALUES (1, '{MIGRATIONS[0].description}', "
        "'2024-01-01 00:00:00')"
    )
    blob = encode_session(Session.new_from_task("old", "start", context={"kept": True}))
    blob_param = "?" if backend.name == "sqlite" else "$1"
    await backend.execute(  # the eleven columns of migration 1, in its order
        "INSERT INTO flowcore_sessions VALUES ('old', 'default', 'start', NULL, false, 1, "
        f"{blob_param}, '2024-01-01 00:00:00', '2024-01-01 00:00:00', NULL, false)",
        blob,
    )


async def test_connecting_to_a_database_of_the_previous_schema_adds_wake_at_and_its_index(
    empty: Backend,
) -> None:
    await make_version_1(empty)

    storage = await empty.open()

    assert await applied(empty) == [(m.version, m.description) for m in MIGRATIONS]
    columns = await empty.columns("flowcore_sessions")
    assert columns == {column.name: column.nullable for column in sessions.columns}
    assert await empty.indexes("flowcore_sessions") == {index.name for index in sessions.indexes}
    old = await storage.get("old")  # the stored sessions are as they were
    assert old is not None
    assert (old.version, old.context.get("kept"), old.wake_at) == (1, True, None)
    assert await storage.due_sessions(NOW) == []
    old.wake_at = NOW
    await storage.save(old)
    assert await storage.due_sessions(NOW) == ["old"]


async def test_a_storage_that_does_not_migrate_says_the_previous_schema_needs_migrating(
    empty: Backend,
) -> None:
    await make_version_1(empty)
    storage = await empty.open(migrate=False)
    older = r"tables are older than this flowcore-sql: run `await storage.migrate\(\)`"

    old = await storage.get("old")  # reading a session needs nothing new
    assert old is not None
    with pytest.raises(StorageError, match=f"^Could not find the due sessions in .*{older}"):
        await storage.due_sessions()
    with pytest.raises(StorageError, match=f"^Could not save session 'old' to .*{older}"):
        await storage.save(old)

    assert await storage.migrate() == [2]
    await storage.save(old)
    assert await storage.due_sessions() == []


async def test_a_read_only_storage_says_how_to_migrate_the_previous_schema(
    tmp_path: Path,
) -> None:
    backend = Backend("sqlite", tmp_path, None)  # read-only mode is SQLite's
    try:
        await make_version_1(backend)
        storage = await backend.open(read_only=True)

        assert await storage.get("old") is not None
        with pytest.raises(StorageError, match="read-only storage applies no migration"):
            await storage.due_sessions()
    finally:
        await backend.close()


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
            lease = storage._leases._idle[0]  # the one connection the steps used
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
