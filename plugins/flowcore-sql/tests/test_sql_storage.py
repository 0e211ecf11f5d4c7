"""What SQL storage adds to the contract: a row per session, connecting, expiry and cleanup.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import Backend

from flowcore import (
    Context,
    FlowRunner,
    GraphBuilder,
    NextAction,
    Session,
    SessionConflict,
    SessionNotFound,
    StorageError,
    TaskResult,
    task,
)
from flowcore.codec import decode_session

UTC = timezone.utc
T = TypeVar("T")


@task("count")
def count(ctx: Context) -> TaskResult:
    ctx.set("count", ctx.get("count", 0) + 1)
    return TaskResult(f"count is {ctx.get('count')}", NextAction.WaitForInput, "counting")


COUNTER = GraphBuilder("counter").add_task(count).build()


def new_session(session_id: str = "s1", **values: object) -> Session:
    return Session.new_from_task(session_id, "count", graph_id="counter", context=values)


# -- one row per session ---------------------------------------------------------------------------


async def test_a_session_is_one_row_with_its_fields_beside_the_blob(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    runner = FlowRunner(COUNTER, storage)
    await runner.create_session("claim-7", context={"amount": 120})
    await runner.run("claim-7")

    row = await backend.row("claim-7")

    assert row is not None
    assert row["graph_id"] == "counter"
    assert row["current_task_id"] == "count"
    assert row["status_message"] == "counting"
    assert not row["is_completed"]
    assert row["version"] == 2
    assert row["expires_at"] is None
    stored = decode_session(bytes(row["blob"]), session_id="claim-7", version=2)
    assert stored.context.get("count") == 1
    assert stored.context.get("amount") == 120


async def read_around_a_second_save(
    storage: SqlSessionStorage, read: Callable[[], Awaitable[T | None]]
) -> tuple[T, T]:
    """What ``read()`` gives after a new session's first save, and after its second one 10 ms
    later."""
    session = new_session()
    await storage.save(session)
    first = await read()
    await asyncio.sleep(0.01)

    await storage.save(session)

    second = await read()
    assert first is not None
    assert second is not None
    return first, second


async def test_each_save_updates_updated_at_and_keeps_created_at(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    first, second = await read_around_a_second_save(storage, lambda: backend.row("s1"))

    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]


async def test_a_session_outlives_the_storage_that_saved_it(backend: Backend) -> None:
    async with backend.storage() as first:
        await FlowRunner(COUNTER, first).create_session("s1")
        await FlowRunner(COUNTER, first).run("s1")

    async with backend.storage() as second:
        result = await FlowRunner(COUNTER, second).run("s1")

    assert result.response == "count is 2"


async def test_two_storages_on_one_database_conflict_like_two_processes(
    backend: Backend,
) -> None:
    web = await backend.open()
    worker = await backend.open()
    await web.save(new_session())

    from_web = await web.get("s1")
    from_worker = await worker.get("s1")
    assert from_web is not None
    assert from_worker is not None
    await worker.save(from_worker)

    with pytest.raises(SessionConflict, match="stored version is 2"):
        await web.save(from_web)


# -- connecting and closing ------------------------------------------------------------------------


async def test_a_storage_connects_on_first_use(backend: Backend) -> None:
    storage = backend.storage()
    assert "not connected" in repr(storage)

    await storage.save(new_session())

    assert "(connected)" in repr(storage)
    assert await storage.get("s1") is not None


async def test_a_closed_storage_refuses_to_work(backend: Backend) -> None:
    storage = await backend.open()
    await storage.close()
    await storage.close()  # closing twice is fine

    with pytest.raises(StorageError, match="is closed; open a new one"):
        await storage.get("s1")


# -- expiry ----------------------------------------------------------------------------------------


async def test_by_default_sessions_never_expire(storage: SqlSessionStorage) -> None:
    await storage.save(new_session())

    assert storage.ttl is None
    assert await storage.get_expiry("s1") is None


async def test_with_a_ttl_each_save_renews_the_expiry(backend: Backend) -> None:
    storage = await backend.open(ttl=timedelta(hours=1))

    first, second = await read_around_a_second_save(storage, lambda: storage.get_expiry("s1"))

    assert second > first
    assert second.tzinfo is not None
    assert timedelta(minutes=59) < second - datetime.now(UTC) <= timedelta(hours=1)


async def test_a_session_left_alone_longer_than_the_ttl_reads_as_missing(
    backend: Backend,
) -> None:
    storage = await backend.open(ttl=0.2)
    runner = FlowRunner(COUNTER, storage)
    await runner.create_session("s1")
    assert await storage.get("s1") is not None

    await asyncio.sleep(0.3)

    assert await storage.get("s1") is None
    with pytest.raises(SessionNotFound):
        await runner.run("s1")


async def test_an_expired_session_reads_as_missing(storage: SqlSessionStorage) -> None:
    await storage.save(new_session())

    await storage.set_expiry("s1", datetime.now(UTC) - timedelta(seconds=1))

    assert await storage.get("s1") is None
    with pytest.raises(SessionNotFound):
        await storage.get_expiry("s1")


async def test_saving_a_session_that_expired_after_it_was_loaded_is_a_conflict(
    storage: SqlSessionStorage,
) -> None:
    await storage.save(new_session())
    loaded = await storage.get("s1")
    assert loaded is not None

    await storage.set_expiry("s1", 0)  # expires now
    with pytest.raises(SessionConflict, match=r"expired at .* after it was loaded at version 1"):
        await storage.save(loaded)

    assert loaded.version == 1


async def test_a_new_session_may_take_the_id_of_an_expired_one(
    storage: SqlSessionStorage,
) -> None:
    await storage.save(new_session(owner="old"))
    await storage.set_expiry("s1", 0)

    fresh = new_session(owner="new")
    await storage.save(fresh)

    assert fresh.version == 1
    loaded = await storage.get("s1")
    assert loaded is not None
    assert loaded.context.get("owner") == "new"
    assert await storage.get_expiry("s1") is None  # the old session's expiry went with it


async def test_a_session_keeps_its_own_expiry_through_saves(backend: Backend) -> None:
    storage = await backend.open(ttl=60)
    session = new_session()
    await storage.save(session)
    deadline = datetime(2100, 1, 1, tzinfo=UTC)

    await storage.set_expiry("s1", deadline)
    await storage.save(session)
    await storage.save(session)

    assert await storage.get_expiry("s1") == deadline


async def test_set_expiry_takes_a_delay_or_none_for_never(backend: Backend) -> None:
    storage = await backend.open(ttl=60)
    await storage.save(new_session())

    await storage.set_expiry("s1", timedelta(days=2))
    expiry = await storage.get_expiry("s1")
    assert expiry is not None
    assert timedelta(days=1, hours=23) < expiry - datetime.now(UTC) <= timedelta(days=2)

    await storage.set_expiry("s1", None)
    assert await storage.get_expiry("s1") is None


async def test_an_expiry_in_any_time_zone_is_kept_as_the_same_instant(
    storage: SqlSessionStorage,
) -> None:
    await storage.save(new_session())
    india = timezone(timedelta(hours=5, minutes=30))
    deadline = datetime(2100, 1, 1, 5, 30, tzinfo=india)

    await storage.set_expiry("s1", deadline)

    stored = await storage.get_expiry("s1")
    assert stored == deadline
    assert stored == datetime(2100, 1, 1, tzinfo=UTC)
    assert stored is not None
    assert stored.utcoffset() == timedelta(0)


async def test_set_expiry_of_a_missing_session_raises_session_not_found(
    storage: SqlSessionStorage,
) -> None:
    with pytest.raises(SessionNotFound, match="never-saved"):
        await storage.set_expiry("never-saved", 60)


@pytest.mark.parametrize(
    ("expires", "error"),
    [
        (datetime(2100, 1, 1), ValueError),  # naive: which zone?
        ("tomorrow", TypeError),
        (True, TypeError),
    ],
)
async def test_set_expiry_refuses_what_is_not_a_time(
    storage: SqlSessionStorage, expires: object, error: type[Exception]
) -> None:
    await storage.save(new_session())
    with pytest.raises(error, match="expires must be"):
        await storage.set_expiry("s1", expires)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ttl", [0, -5, timedelta(0), float("inf"), float("nan"), 1e300, 10**400, "1h", True]
)
def test_a_ttl_must_be_a_positive_duration(backend: Backend, ttl: object) -> None:
    with pytest.raises(StorageError, match=r"The option ttl=.* is not a positive timedelta"):
        backend.storage(ttl=ttl)


# -- cleanup ---------------------------------------------------------------------------------------


async def test_cleanup_deletes_the_expired_sessions_in_batches(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    for i in range(25):
        await storage.save(new_session(f"old-{i}"))
        await storage.set_expiry(f"old-{i}", 0)
    await storage.save(new_session("forever"))
    await storage.save(new_session("later"))
    await storage.set_expiry("later", timedelta(hours=1))

    deleted = await storage.cleanup(batch=10)

    assert deleted == 25
    assert await backend.row("old-0") is None
    assert await backend.row("old-24") is None
    assert await storage.get("forever") is not None
    assert await storage.get("later") is not None
    assert await storage.cleanup() == 0


async def test_cleanup_does_not_disturb_sessions_being_saved(backend: Backend) -> None:
    storage = await backend.open(ttl=60)
    runner = FlowRunner(COUNTER, storage)
    for i in range(10):
        await runner.create_session(f"live-{i}")
    for i in range(200):
        await storage.save(new_session(f"old-{i}"))
        await storage.set_expiry(f"old-{i}", 0)

    async def keep_stepping(session_id: str) -> None:
        for _ in range(5):
            await runner.run(session_id)

    results = await asyncio.gather(
        storage.cleanup(batch=7), *(keep_stepping(f"live-{i}") for i in range(10))
    )

    assert results[0] == 200
    for i in range(10):
        live = await storage.get(f"live-{i}")
        assert live is not None
        assert live.context.get("count") == 5


async def test_cleanup_takes_a_positive_batch(storage: SqlSessionStorage) -> None:
    with pytest.raises(ValueError, match="batch must be a positive int"):
        await storage.cleanup(batch=0)


# -- text the database cannot hold -----------------------------------------------------------------


async def test_an_id_with_a_lone_surrogate_is_a_storage_error_naming_it(
    storage: SqlSessionStorage,
) -> None:
    bad = "claim-\ud800"
    calls = [
        lambda: storage.get(bad),
        lambda: storage.save(new_session(bad)),
        lambda: storage.delete(bad),
        lambda: storage.set_expiry(bad, 60),
        lambda: storage.get_expiry(bad),
        lambda: storage.list_sessions(after=bad),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=r"'claim-\\ud800' .* lone surrogate \(U\+D800"):
            await call()

    assert await storage.list_sessions() == []  # and the storage goes on


async def test_the_nul_character_in_an_id_works_on_sqlite_and_is_refused_by_postgresql(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    if backend.name == "sqlite":
        await storage.save(new_session("a\x00b"))
        assert await storage.get("a\x00b") is not None
        assert await storage.get("a") is None
        return
    with pytest.raises(StorageError, match=r"'a\\x00b' .* NUL character .* PostgreSQL text"):
        await storage.save(new_session("a\x00b"))
    with pytest.raises(StorageError, match="NUL character"):
        await storage.get("a\x00b")


async def test_a_session_whose_fields_hold_nul_is_stored_whole(
    backend: Backend, storage: SqlSessionStorage
) -> None:
    session = new_session("s1", note="a\x00b")
    session.status_message = "waiting\x00for input"
    session.current_task_id = "count"

    await storage.save(session)

    loaded = await storage.get("s1")
    assert loaded is not None
    assert loaded.status_message == "waiting\x00for input"  # the blob keeps it as it is
    assert loaded.context.get("note") == "a\x00b"
    row = await backend.row("s1")
    assert row is not None
    # The column is a copy for queries: PostgreSQL's text shows NUL as U+FFFD.
    expected = "waiting\x00for input" if backend.name == "sqlite" else "waiting\ufffdfor input"
    assert row["status_message"] == expected
