"""SQLite on real file systems: a database it may only read.

The read-only directory is a read-only bind mount made for the test, so these tests need root;
without it they are skipped, saying so.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowcore_sql import SqliteSessionStorage, SqlSessionStorage
from mounts import read_only_view

from flowcore import Session, StorageError


def new_session(session_id: str, size: int) -> Session:
    return Session.new_from_task(session_id, "start", context={"pad": os.urandom(size).hex()})


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
