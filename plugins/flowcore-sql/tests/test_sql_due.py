"""due_sessions on SQL storage: the wake_at column, its index, expiry, and the database's clock.

flowcore's conformance suite checks what due_sessions returns; these check what it cannot see:
the column each save writes, that the database reads a range of the index (not the table),
that expired sessions are never due, and a timer that a real step sets and clears. Every test
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flowcore_sql import SqlSessionStorage
from flowcore_sql._schema import WAKE_AT_INDEX
from flowcore_sql._statements import DUE
from sql_backends import Backend

from flowcore import (
    ExecutionStatus,
    FlowRunner,
    GraphBuilder,
    NextAction,
    Session,
    StorageError,
    TaskResult,
    task,
)
from flowcore.codec import encode_session

UTC = timezone.utc
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def waiting(session_id: str, wake_at: datetime | None) -> Session:
    session = Session.new_from_task(session_id, "start", graph_id="timers")
    session.wake_at = wake_at
    return session


async def stored_wake_at(backend: Backend, session_id: str) -> datetime | None:
    """The row's wake_at as the database holds it, as an aware datetime in UTC."""
    row = await backend.row(session_id)
    assert row is not None
    value = row["wake_at"]
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)  # SQLite: UTC text


# -- the column ------------------------------------------------------------------------------------


async def test_each_save_writes_the_sessions_wake_at_in_utc_and_clears_it(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    wake_at = datetime(2031, 5, 6, 12, 38, 9, 123456, tzinfo=india)
    session = waiting("s1", wake_at)
    await storage.save(session)

    assert await stored_wake_at(backend, "s1") == wake_at  # the same instant
    assert await stored_wake_at(backend, "s1") == datetime(2031, 5, 6, 7, 8, 9, 123456, UTC)

    session.wake_at = None
    await storage.save(session)

    assert await stored_wake_at(backend, "s1") is None
    assert await storage.due_sessions(datetime.max.replace(tzinfo=UTC)) == []


async def test_a_wake_at_beyond_what_utc_can_hold_sorts_first_or_last(
    storage: SqlSessionStorage,
) -> None:
    # Aware datetimes whose UTC instant is before the year 1 or after 9999: stored as the
    # earliest and latest instants, so they still sort where they belong.
    before_year_1 = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    after_9999 = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    await storage.save(waiting("ordinary", NOW))
    await storage.save(waiting("after-9999", after_9999))
    await storage.save(waiting("before-year-1", before_year_1))

    assert await storage.due_sessions(NOW) == ["before-year-1", "ordinary"]
    assert await storage.due_sessions(after_9999) == ["before-year-1", "ordinary", "after-9999"]
    assert await storage.due_sessions(before_year_1) == ["before-year-1"]


# -- a timer set and cleared by real steps ---------------------------------------------------------

WAIT = timedelta(milliseconds=300)


@task("ask")
def ask(ctx: Any) -> TaskResult:
    return TaskResult("reminder set", NextAction.WaitUntil(WAIT))


@task("remind")
def remind(ctx: Any) -> TaskResult:
    ctx.set("reminded", True)
    return TaskResult("reminded", NextAction.End)


REMINDER = GraphBuilder("reminder").add_task(ask).add_task(remind).add_edge("ask", "remind").build()


async def test_a_step_that_waits_is_due_at_its_time_and_no_longer_once_woken(
    storage: SqlSessionStorage,
) -> None:
    runner = FlowRunner(REMINDER, storage)
    await runner.create_session("claim-1")
    await runner.create_session("claim-2")  # never stepped: waits for nothing

    result = await runner.run("claim-1")

    assert isinstance(result.status, ExecutionStatus.Scheduled)
    wake_at = result.status.wake_at
    assert await storage.due_sessions(wake_at - timedelta(microseconds=1)) == []
    assert await storage.due_sessions(wake_at) == ["claim-1"]
    assert await storage.due_sessions() == []  # by the database's clock, not yet

    await asyncio.sleep((wake_at - datetime.now(UTC) + timedelta(milliseconds=50)).total_seconds())

    assert await storage.due_sessions() == ["claim-1"]  # by the database's clock, now due
    woken = await runner.run("claim-1")
    assert woken.status == ExecutionStatus.Completed
    assert await storage.due_sessions() == []
    assert await storage.due_sessions(datetime.max.replace(tzinfo=UTC)) == []


# -- expiry ----------------------------------------------------------------------------------------


async def test_an_expired_session_is_never_due(backend: Backend) -> None:
    storage = await backend.open(ttl=3600)
    a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    for session_id in ("expired", "past-ttl", "replaced", "live"):
        await storage.save(waiting(session_id, a_minute_ago))
    await storage.set_expiry("expired", 0)
    await backend.execute(  # left alone longer than its ttl
        "UPDATE flowcore_sessions SET expires_at = created_at WHERE id = "
        + ("?" if backend.name == "sqlite" else "$1"),
        "past-ttl",
    )
    await storage.set_expiry("replaced", 0)
    await storage.save(waiting("replaced", None))  # a new session takes the expired one's id

    assert await storage.due_sessions() == ["live"]
    assert await storage.due_sessions(NOW) == ["live"]
    assert await storage.due_sessions(NOW, 1) == ["live"]  # the limit counts live ones only


async def test_cleanup_removes_expired_waiting_sessions_and_leaves_the_live_ones_due(
    backend: Backend,
) -> None:
    storage = await backend.open()
    await storage.save(waiting("gone", NOW))
    await storage.save(waiting("kept", NOW))
    await storage.set_expiry("gone", 0)

    assert await storage.cleanup() == 1
    assert await storage.due_sessions(NOW) == ["kept"]


# -- the index -------------------------------------------------------------------------------------

STORED = 20_000


async def fill(backend: Backend) -> None:
    """STORED sessions: every 1,000th due at NOW, a third of the others waiting for later, the
    rest for nothing. PostgreSQL then gathers its statistics, as autovacuum soon would; SQLite
    keeps none unless asked to, as in most SQLite files."""
    due_blob = encode_session(waiting("x", NOW))
    idle_blob = encode_session(waiting("x", None))
    if backend.name == "sqlite":
        numbers = (
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
            f"WHERE i < {STORED - 1})"
        )
        key, source = "printf('s%05d', i)", "n"
        blob_of = "CASE WHEN i % 1000 = 7 OR i % 3 = 1 THEN ?1 ELSE ?2 END"
        wake_of = (
            "CASE WHEN i % 1000 = 7 THEN '2029-12-31 23:00:00.000000' "
            "WHEN i % 3 = 1 THEN strftime('%Y-%m-%d %H:%M:%f000', '2030-01-01', "
            "printf('+%d seconds', i + 1)) END"
        )
        rest = "'g', 't', false, 1, '2024-01-01', '2024-01-01', false"
    else:
        numbers = ""
        key, source = "'s' || lpad(i::text, 5, '0')", f"generate_series(0, {STORED - 1}) AS i"
        blob_of = "CASE WHEN i % 1000 = 7 OR i % 3 = 1 THEN $1::bytea ELSE $2::bytea END"
        wake_of = (
            "CASE WHEN i % 1000 = 7 THEN timestamptz '2029-12-31 23:00:00Z' "
            "WHEN i % 3 = 1 THEN timestamptz '2030-01-01 00:00:00Z' + make_interval(secs => i) "
            "END"
        )
        rest = "'g', 't', false, 1, now(), now(), false"
    await backend.execute(
        "INSERT INTO flowcore_sessions (id, blob, wake_at, graph_id, current_task_id, "
        f"is_completed, version, created_at, updated_at, own_expiry) {numbers} "
        f"SELECT {key}, {blob_of}, {wake_of}, {rest} FROM {source}",
        due_blob,
        idle_blob,
    )
    if backend.name == "postgresql":
        await backend.execute("ANALYZE flowcore_sessions")


async def plans(backend: Backend, storage: SqlSessionStorage) -> dict[tuple[str, bool], str]:
    """How the database runs each statement due_sessions runs: by a description of the
    arguments given, and whether a limit was."""
    found = {}
    for (now_given, limit_given), statement in DUE.items():
        compiled = storage._statements[id(statement)]  # type: ignore[attr-defined]
        args = compiled.args({"now": NOW, "limit": 10})
        name = f"now={'NOW' if now_given else 'None'}, limit={10 if limit_given else None}"
        if backend.name == "sqlite":
            rows = await backend.fetch(f"EXPLAIN QUERY PLAN {compiled.sql}", *args)
            found[name, limit_given] = "\n".join(row[-1] for row in rows)
            continue
        # PostgreSQL plans a statement for its arguments, and after a few runs may keep one
        # plan for any arguments (asyncpg's statements are prepared): both must use the index.
        await backend.execute("DEALLOCATE ALL")
        await backend.execute(f"PREPARE due AS {compiled.sql}")
        literals = [f"'{a.isoformat()}'" if isinstance(a, datetime) else str(a) for a in args]
        call = f"EXECUTE due({', '.join(literals)})" if literals else "EXECUTE due"
        for mode in ("force_custom_plan", "force_generic_plan"):
            await backend.execute(f"SET plan_cache_mode = {mode}")
            rows = await backend.fetch(f"EXPLAIN {call}")
            found[f"{name}, {mode}", limit_given] = "\n".join(row[0] for row in rows)
        await backend.execute("RESET plan_cache_mode")
    return found


async def test_due_sessions_reads_a_range_of_the_wake_at_index(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    await fill(backend)

    due = await storage.due_sessions(NOW)

    assert due == [f"s{i:05d}" for i in range(7, STORED, 1000)]
    for (arguments, limited), plan in (await plans(backend, storage)).items():
        where = f"{arguments}:\n{plan}"
        # A range of the index, never the whole table ...
        assert WAKE_AT_INDEX in plan, where
        assert "Seq Scan" not in plan, where
        assert not any(line.startswith("SCAN") for line in plan.splitlines()), where
        # ... and with a limit, read in the index's order and stopped there: no sort.
        if limited:
            assert "TEMP B-TREE" not in plan, where
            assert "Sort" not in plan, where


# -- failures --------------------------------------------------------------------------------------


async def test_a_database_failure_is_a_storage_error(backend: Backend) -> None:
    await backend.use_new_schema()  # PostgreSQL: a schema without the tables
    storage = await backend.open(migrate=False)

    with pytest.raises(
        StorageError, match=r"^Could not find the due sessions in .*tables are missing"
    ):
        await storage.due_sessions(NOW, 10)


async def test_bad_arguments_are_refused_before_connecting(backend: Backend) -> None:
    storage = backend.storage()

    with pytest.raises(ValueError, match="aware datetime"):
        await storage.due_sessions(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="limit"):
        await storage.due_sessions(NOW, -1)

    assert "(not connected)" in repr(storage)
