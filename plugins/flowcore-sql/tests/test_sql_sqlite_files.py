"""SQLite on real file systems: a disk that fills up, and a database it may only read.

The disks are mounts made for the test (a small tmpfs, a read-only bind mount), so these tests
need root; without it they are skipped, saying so.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowcore_sql import SqliteSessionStorage, SqlSessionStorage
from mounts import fill, read_only_view, small_disk

from flowcore import Session, StorageError


def new_session(session_id: str, size: int) -> Session:
    return Session.new_from_task(session_id, "start", context={"pad": os.urandom(size).hex()})


async def step(storage: SqlSessionStorage, session: Session, size: int) -> None:
    session.context.set("pad", os.urandom(size).hex())  # a new blob: new pages to write
    await storage.save(session)


# -- a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB disk: smaller than the 4 MB SQLite's write-ahead log grows to on its own."""
    with small_disk(tmp_path / "disk", "2m") as mounted:
        yield mounted


async def test_sqlite_recovers_by_itself_once_a_full_disk_has_room_again(disk: Path) -> None:
    rng = random.Random(7)
    storage = SqliteSessionStorage(disk / "sessions.db")
    sessions = [new_session(f"s{i}", 1500) for i in range(20)]
    try:
        for session in sessions:
            await storage.save(session)
        for _ in range(100):
            await step(storage, rng.choice(sessions), 1500)
        filler = fill(disk)

        failed = None
        for _ in range(2000):
            session = rng.choice(sessions)
            try:
                await step(storage, session, 1500)
            except StorageError as exc:
                failed = (session, exc)
                break
        assert failed is not None, "the disk should have filled up"
        session, exc = failed
        assert "database or disk is full" in str(exc)
        assert "nothing was saved" in str(exc)
        stored = await storage.get(session.id)
        assert stored is not None
        assert stored.version == session.version  # nothing half-written

        filler.unlink()  # room again: every later step succeeds, in this same storage
        for _ in range(400):
            await step(storage, rng.choice(sessions), 1500)

        for session in sessions:
            stored = await storage.get(session.id)
            assert stored is not None
            assert stored.version == session.version
            assert stored.context.get("pad") == session.context.get("pad")
    finally:
        await storage.close()


# -- a database it may only read -------------------------------------------------------------------


@pytest.fixture
async def written(tmp_path: Path) -> Path:
    """A directory holding sessions.db with two sessions, closed (no -wal or -shm file left)."""
    directory = tmp_path / "data"
    directory.mkdir()
    async with SqliteSessionStorage(directory / "sessions.db") as storage:
        await storage.save(new_session("a", 10))
        await storage.save(new_session("b", 10))
    assert sorted(os.listdir(directory)) == ["sessions.db"]
    return directory


@pytest.fixture
def read_only(written: Path, tmp_path: Path) -> Iterator[Path]:
    """``written``, seen through a read-only mount: nobody can write there, root included."""
    with read_only_view(written, tmp_path / "read-only") as view:
        yield view


@pytest.mark.parametrize("how", ["url", "keyword"])
async def test_a_read_only_database_can_be_read_and_refuses_changes(
    read_only: Path, how: str
) -> None:
    path = read_only / "sessions.db"
    storage = (
        SqlSessionStorage.from_url(f"sqlite:///{path}?mode=ro")
        if how == "url"
        else SqliteSessionStorage(path, read_only=True)
    )
    async with storage:
        assert storage.read_only
        loaded = await storage.get("b")
        assert loaded is not None
        assert loaded.version == 1
        assert await storage.list_sessions() == ["a", "b"]
        assert await storage.get_expiry("a") is None

        changes = [
            lambda: storage.save(loaded),
            lambda: storage.save(new_session("c", 10)),
            lambda: storage.delete("a"),
            lambda: storage.set_expiry("a", 60),
            lambda: storage.cleanup(),
            lambda: storage.migrate(),
        ]
        for change in changes:
            with pytest.raises(StorageError, match=r"is opened read-only \(mode=ro"):
                await change()

        assert loaded.version == 1
        assert await storage.list_sessions() == ["a", "b"]


async def test_opening_a_read_only_database_read_write_says_to_use_mode_ro(
    read_only: Path,
) -> None:
    storage = SqlSessionStorage.from_url(f"sqlite:///{read_only}/sessions.db")

    with pytest.raises(StorageError, match=r"mode=ro") as caught:
        await storage.get("a")
    assert f"sqlite:///{read_only}/sessions.db" in str(caught.value)
    await storage.close()


async def test_a_reader_sees_what_a_writer_saves_meanwhile(written: Path, read_only: Path) -> None:
    async with (
        SqliteSessionStorage(written / "sessions.db") as writer,
        SqliteSessionStorage(read_only / "sessions.db", read_only=True) as reader,
    ):
        await writer.save(new_session("c", 10))  # the writer's -wal and -shm files now exist

        assert await reader.list_sessions() == ["a", "b", "c"]
        await writer.delete("a")
        assert await reader.get("a") is None
        assert await reader.list_sessions() == ["b", "c"]


async def test_read_only_mode_needs_an_existing_database(tmp_path: Path) -> None:
    storage = SqliteSessionStorage(tmp_path / "missing.db", read_only=True)

    with pytest.raises(StorageError, match="there is no SQLite database at"):
        await storage.get("a")
    assert not (tmp_path / "missing.db").exists()
    await storage.close()


async def test_read_only_mode_on_a_database_without_the_tables_says_so(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()  # an empty database file

    async with SqliteSessionStorage(path, read_only=True) as storage:
        with pytest.raises(StorageError, match="has no flowcore tables"):
            await storage.get("a")
