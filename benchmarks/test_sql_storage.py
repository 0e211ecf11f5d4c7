"""SQL storage: what a step costs on SQLite and PostgreSQL, beside the raw driver's floor.

    .venv/bin/python -m pytest benchmarks/test_sql_storage.py --benchmark-only

Tracked, not gated: storage timings depend on the disk and on whatever else the machine runs.
Each test measures every step on its own clock and records p50 and p99 (µs) in the benchmark's
``extra_info``; the table at the end of the run (also written to
``build/sql-storage-benchmarks.md``) is what docs/performance.md shows.

- step: ``await runner.run(id)`` (load, run a task that bumps a counter, save) with a 1 KB and a
  100 KB context;
- floor: one SELECT and one UPDATE of the same row through asyncpg directly, on the same table
  and in the same run, alternating with the PostgreSQL steps so that both see the same noise;
- throughput: 32 sessions stepping at once through one storage;
- one hot session: 64 runs of it at once through separate runners; every run is committed once
  or refused with SessionConflict, and no update is lost;
- due sessions: ``due_sessions(now, 100)`` among 1,000,000 stored sessions of which 100 are due
  (half of the others wait for a later time), rows written in bulk in the plugin's own table
  layout with real encoded blobs; the figures are pytest-benchmark's rounds.

PostgreSQL is the server at ``FLOWCORE_TEST_POSTGRES_URL`` (default: the local one); without it
the PostgreSQL benchmarks are skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from flowcore_sql import PostgresSessionStorage, SqliteSessionStorage, SqlSessionStorage
from flowcore_sql._schema import WAKE_AT_INDEX, UtcDateTime, sessions
from sqlalchemy.dialects import sqlite

from flowcore import (
    FlowRunner,
    Session,
    SessionStorage,
)
from flowcore.codec import encode_session

from .storage_figures import (
    GRAPH,
    Figures,
    context_of,
    hot_session,
    many_sessions,
    percentiles,
    run,
    timed,
)

POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SCHEMA = f"flowcore_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
SIZES = {"1KB": 1024, "100KB": 100 * 1024}
STEPS = 3000  # measured steps per figure (after a warm-up)
FIGURES = Figures(Path(__file__).resolve().parent.parent / "build" / "sql-storage-benchmarks.md")
record = FIGURES.record


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is unreachable ({type(exc).__name__}: {exc})")
    yield POSTGRES_URL

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await connection.close()

    asyncio.run(drop())


@pytest.fixture(scope="module", autouse=True)
def table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the figures of the run as the Markdown table docs/performance.md shows."""
    yield
    FIGURES.report(request)


def open_backend(backend: str, tmp_path: Path, url: str | None, **options: Any) -> SessionStorage:
    if backend == "sqlite":
        return SqliteSessionStorage(tmp_path / "bench.db")
    return PostgresSessionStorage(str(url), schema=SCHEMA, **options)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "postgresql":
        return request.param, request.getfixturevalue("postgres_url")
    return request.param, None


# -- a step ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_step_on_sqlite(benchmark: Any, tmp_path: Path, size: str) -> None:
    async def measure() -> None:
        async with SqliteSessionStorage(tmp_path / "bench.db") as storage:
            runner = FlowRunner(GRAPH, storage)
            await runner.create_session("s", context=context_of(SIZES[size]))
            await timed(lambda: runner.run("s"), 300)  # warm-up
            samples = await timed(lambda: runner.run("s"), STEPS)
        record(benchmark, f"SQLite step, {size} context", **percentiles(samples))

    run(benchmark, measure)


@pytest.mark.parametrize("size", SIZES)
def test_step_on_postgres_beside_the_raw_floor(
    benchmark: Any, postgres_url: str, size: str
) -> None:
    async def measure() -> None:
        async with PostgresSessionStorage(postgres_url, schema=SCHEMA) as storage:
            runner = FlowRunner(GRAPH, storage)
            session_id = f"step-{size}"
            await storage.delete(session_id)
            await runner.create_session(session_id, context=context_of(SIZES[size]))
            driver = await asyncpg.connect(postgres_url)
            floor_id = f"floor-{size}"
            floor = await floor_pair(driver, storage, floor_id)
            try:
                await timed(lambda: runner.run(session_id), 300)  # warm-up
                await timed(floor, 300)
                steps: list[float] = []
                floors: list[float] = []
                for _ in range(STEPS):  # one of each in turn
                    steps += await timed(lambda: runner.run(session_id), 1)
                    floors += await timed(floor, 1)
            finally:
                await driver.close()
        step, raw = percentiles(steps), percentiles(floors)
        ratio = round(step["p50_us"] / raw["p50_us"], 2)
        record(benchmark, f"PostgreSQL step, {size} context", **step, **{"vs floor": f"{ratio}x"})
        record(benchmark, f"PostgreSQL raw floor, {size} row", **raw)

    run(benchmark, measure)


async def floor_pair(
    driver: asyncpg.Connection, storage: PostgresSessionStorage, session_id: str
) -> Callable[[], Awaitable[None]]:
    """One SELECT and one UPDATE of a row of the sessions table, through asyncpg directly."""
    source = await storage.get(session_id.replace("floor", "step"))
    assert source is not None
    await storage.delete(session_id)
    source.id, source.version = session_id, 0
    await storage.save(source)
    table = f'"{SCHEMA}".flowcore_sessions'
    select = f"SELECT version, blob FROM {table} WHERE id = $1"
    update = f"UPDATE {table} SET version = $1, blob = $2 WHERE id = $3 AND version = $4"

    async def pair() -> None:
        version, blob = await driver.fetchrow(select, session_id)
        await driver.execute(update, version + 1, blob, session_id, version)

    return pair


# -- many sessions, one session --------------------------------------------------------------------


def test_throughput_with_32_sessions(
    benchmark: Any, backend: tuple[str, str | None], tmp_path: Path
) -> None:
    name, url = backend

    async def measure() -> None:
        async with open_backend(name, tmp_path, url) as storage:
            figures = await many_sessions(storage, "many", context_of(1024))
        record(benchmark, f"{label(name)}: 32 sessions at once, 1KB", **figures)

    run(benchmark, measure)


def test_64_concurrent_runs_of_one_session(
    benchmark: Any, backend: tuple[str, str | None], tmp_path: Path
) -> None:
    name, url = backend
    rounds = 20

    async def measure() -> None:
        figures = await hot_session(
            [
                # 16 runs at once per storage: a pool that size keeps them from opening connections
                open_backend(name, tmp_path, url, pool_size=16)
                for _ in range(4)
            ],
            rounds,
        )
        record(benchmark, f"{label(name)}: 64 runs of one session at once", **figures)

    run(benchmark, measure)


def label(backend: str) -> str:
    return "SQLite" if backend == "sqlite" else "PostgreSQL"


# -- due sessions ----------------------------------------------------------------------------------

STORED = 1_000_000
DUE = 100  # the ids i with i % 10_000 == 1234: spread among the others
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)

# Each column of flowcore-sql's table, as the database computes it for row i (0 to STORED - 1)
# from three parameters: the blob of a waiting session, the blob of one that waits for nothing,
# and NOW. Due sessions woke up to an hour before NOW; half of the others wake after it, one a
# second; the rest wait for nothing.
ROWS = {
    "sqlite": {
        "id": "printf('s%07d', i)",
        "blob": "CASE WHEN i % 10000 = 1234 OR i % 2 = 1 THEN ?1 ELSE ?2 END",
        "created_at": "?3",
        "updated_at": "?3",
        "wake_at": (
            "CASE WHEN i % 10000 = 1234 THEN strftime('%Y-%m-%d %H:%M:%f000', ?3, "
            "printf('-%d seconds', i % 3600)) WHEN i % 2 = 1 THEN strftime("
            "'%Y-%m-%d %H:%M:%f000', ?3, printf('+%d seconds', i + 1)) END"
        ),
        "numbers": "WITH RECURSIVE numbers(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM numbers "
        f"WHERE i < {STORED - 1})",
        "from": "numbers",
    },
    "postgresql": {
        "id": "'s' || lpad(i::text, 7, '0')",
        "blob": "CASE WHEN i % 10000 = 1234 OR i % 2 = 1 THEN $1::bytea ELSE $2::bytea END",
        "created_at": "$3::timestamptz",
        "updated_at": "$3::timestamptz",
        "wake_at": (
            "CASE WHEN i % 10000 = 1234 THEN $3::timestamptz - make_interval(secs => i % 3600) "
            "WHEN i % 2 = 1 THEN $3::timestamptz + make_interval(secs => i + 1) END"
        ),
        "numbers": "",
        "from": f"generate_series(0, {STORED - 1}) AS i",
    },
}
SAME = {
    "graph_id": "'bench'",
    "current_task_id": "'count'",
    "status_message": "NULL",
    "is_completed": "false",
    "version": "1",
    "expires_at": "NULL",
    "own_expiry": "false",
}


def bulk_insert(dialect: str) -> str:
    """One INSERT ... SELECT of STORED rows, in the column order of flowcore-sql's table (a
    column this does not know fails here rather than being left NULL)."""
    values = {**SAME, **ROWS[dialect]}
    names = [column.name for column in sessions.columns]
    missing = set(names) - set(values)
    assert not missing, f"the benchmark does not fill the new columns {missing}"
    select = ", ".join(values[name] for name in names)
    head = values["numbers"]
    return (
        f"INSERT INTO flowcore_sessions ({', '.join(names)}) {head} "
        f"SELECT {select} FROM {values['from']}"
    )


def blobs() -> tuple[bytes, bytes]:
    """Real encoded blobs: a session waiting for NOW, and one waiting for nothing (a blob does
    not hold its session's id)."""

    def blob(wake_at: datetime | None) -> bytes:
        session = Session.new_from_task("x", "count", graph_id="bench", context={"counter": 0})
        session.wake_at = wake_at
        return encode_session(session)

    return blob(NOW), blob(None)


def fill_sqlite(path: Path) -> None:
    # The times as flowcore-sql writes them on SQLite: UTC text that sorts as instants. No
    # ANALYZE, as in most SQLite files: its planner picks the index without statistics.
    as_text = UtcDateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert as_text is not None
    with sqlite3.connect(path) as connection:
        connection.execute(bulk_insert("sqlite"), (*blobs(), as_text(NOW)))
    connection.close()


async def fill_postgres(url: str, schema: str) -> None:
    connection = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        await connection.execute(bulk_insert("postgresql"), *blobs(), NOW)
        await connection.execute("ANALYZE flowcore_sessions")  # as autovacuum soon would
    finally:
        await connection.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def million(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, asyncio.AbstractEventLoop, SqlSessionStorage]]:
    """A storage holding STORED sessions, DUE of them due at NOW, on a loop of its own (rows
    written in bulk, not saved one by one)."""
    name = request.param
    loop = asyncio.new_event_loop()
    storage: SqlSessionStorage
    if name == "sqlite":
        path = tmp_path_factory.mktemp("due") / "due.db"
        storage = SqliteSessionStorage(path)
        loop.run_until_complete(storage.migrate())
        fill_sqlite(path)
    else:
        url = request.getfixturevalue("postgres_url")
        schema = f"{SCHEMA}_due"
        storage = PostgresSessionStorage(url, schema=schema)
        loop.run_until_complete(storage.migrate())
        loop.run_until_complete(fill_postgres(url, schema))
    try:
        yield name, loop, storage
    finally:
        loop.run_until_complete(storage.close())
        if name == "postgresql":
            loop.run_until_complete(drop_schema(url, schema))
        loop.close()


async def drop_schema(url: str, schema: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def test_due_sessions_among_a_million(
    benchmark: Any, million: tuple[str, asyncio.AbstractEventLoop, SqlSessionStorage]
) -> None:
    name, loop, storage = million

    def due() -> list[str]:
        return loop.run_until_complete(storage.due_sessions(NOW, DUE))

    found = due()
    assert sorted(found) == [f"s{i:07d}" for i in range(1234, STORED, 10_000)]
    assert loop.run_until_complete(storage.due_sessions(NOW, DUE + 1)) == found  # no more
    plan = loop.run_until_complete(query_plan(storage))
    # A range of the index, read in order: neither the table nor a sort.
    scan = next((line for line in plan.splitlines() if WAKE_AT_INDEX in line), None)
    assert scan is not None, plan
    assert "TEMP B-TREE" not in plan, plan
    assert "Sort" not in plan, plan

    benchmark.pedantic(due, rounds=200, warmup_rounds=10)
    figures: dict[str, Any] = {"plan": re.sub(r"\s*\(cost=.*", "", scan.strip(" ->"))}
    if benchmark.stats is not None:
        figures.update(percentiles(list(benchmark.stats.stats.data)))
    record(benchmark, f"{label(name)}: due_sessions(now, 100) of 1,000,000", **figures)


async def query_plan(storage: SqlSessionStorage) -> str:
    """How the database runs the statement that due_sessions(NOW, DUE) runs."""
    from flowcore_sql._statements import DUE as STATEMENTS

    compiled = storage._statements[id(STATEMENTS[True, True])]  # type: ignore[attr-defined]
    args = compiled.args({"now": NOW, "limit": DUE})
    if isinstance(storage, SqliteSessionStorage):
        with sqlite3.connect(storage.path) as connection:
            rows = connection.execute("EXPLAIN QUERY PLAN " + compiled.sql, args).fetchall()
        connection.close()
    else:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            rows = await connection.fetch("EXPLAIN " + compiled.sql, *args)
        finally:
            await connection.close()
    return "\n".join(str(row[-1]) for row in rows)
