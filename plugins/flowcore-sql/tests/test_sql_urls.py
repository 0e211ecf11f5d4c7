"""Opening SQL storage by URL: the plugin's entry point, the URL forms, and the mistakes.

A bad URL, an unreachable server or a missing database is a StorageError that names the URL
(never its password) and says what to do, at once rather than after a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from flowcore_sql import PostgresSessionStorage, SqliteSessionStorage, SqlSessionStorage

from flowcore import StorageError

open_url = SqlSessionStorage.from_url
"""What the plugin registers for ``open_storage``: ``factory(url, **options)``."""


def test_open_storage_finds_the_plugin_through_its_entry_point(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from flowcore import Session, open_storage

        async def main():
            async with open_storage("sqlite:///sessions.db", ttl=60) as storage:
                await storage.save(Session.new_from_task("s1", "start"))
                print(type(storage).__name__, (await storage.get("s1")).version)
            print(type(open_storage("postgresql+asyncpg://u@localhost/db")).__name__)

        asyncio.run(main())
        """
    )
    # A fresh interpreter, with whatever plugins are installed: as a user would run it.
    env = {k: v for k, v in os.environ.items() if k != "FLOWCORE_LOAD_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SqliteSessionStorage", "1", "PostgresSessionStorage"]


# -- SQLite URLs -----------------------------------------------------------------------------------


def test_a_relative_sqlite_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    storage = open_url("sqlite:///data/sessions.db")

    assert isinstance(storage, SqliteSessionStorage)
    assert storage.path == str(tmp_path / "data" / "sessions.db")


def test_an_absolute_sqlite_path_takes_four_slashes(tmp_path: Path) -> None:
    storage = open_url(f"sqlite:///{tmp_path}/sessions.db")  # tmp_path starts with "/"

    assert isinstance(storage, SqliteSessionStorage)
    assert storage.path == str(tmp_path / "sessions.db")


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite+pysqlite:///:memory:"])
async def test_an_in_memory_database_lasts_as_long_as_its_storage(url: str) -> None:
    async with open_url(url) as storage:
        assert isinstance(storage, SqliteSessionStorage)
        assert storage.path == ":memory:"
        assert await storage.get("s1") is None


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("sqlite://", "names no file"),
        ("sqlite://localhost/sessions.db", "names a file, not a host"),
        ("sqlite:///sessions.db?mode=ro", "takes no query parameters"),
        ("sqlite+pysqlcipher:///sessions.db", "with Python's sqlite3 only"),
        ("mysql://user@localhost/app", "SQLite or PostgreSQL, not 'mysql'"),
        ("postgresql://user@localhost:port/app", "is not a database URL"),
    ],
)
def test_a_url_it_cannot_serve_is_a_storage_error_saying_why(url: str, advice: str) -> None:
    with pytest.raises(StorageError, match=advice):
        open_url(url)


async def test_a_sqlite_file_in_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    storage = open_url(f"sqlite:///{tmp_path}/no/such/dir/sessions.db")

    with pytest.raises(StorageError, match=r"does not exist; create it first") as caught:
        await storage.get("s1")
    assert f"sqlite:///{tmp_path}/no/such/dir/sessions.db" in str(caught.value)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="pool_size"):
        open_url("sqlite:///sessions.db", pool_size=3)


# -- PostgreSQL URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret@db.example:5432/claims",
        "postgresql+asyncpg://app:s3cret@db.example:5432/claims",
        "postgresql+psycopg://app:s3cret@db.example:5432/claims",
        "postgres://app:s3cret@db.example:5432/claims",
    ],
)
def test_every_postgresql_url_form_opens_postgres_storage_with_the_password_hidden(
    url: str,
) -> None:
    storage = open_url(url)

    assert isinstance(storage, PostgresSessionStorage)
    assert "s3cret" not in storage.url
    assert "s3cret" not in repr(storage)
    assert storage.url.endswith("app:***@db.example:5432/claims")


def test_a_bad_url_is_reported_without_its_password() -> None:
    with pytest.raises(StorageError) as caught:
        open_url("postgresql://app:s3cret@db.example:notaport/claims")

    assert "s3cret" not in str(caught.value)
    assert "app:***@db.example" in str(caught.value)


async def test_an_unreachable_server_is_a_storage_error_not_a_hang() -> None:
    storage = PostgresSessionStorage("postgresql://app:s3cret@127.0.0.1:1/claims")
    started = time.monotonic()

    with pytest.raises(StorageError) as caught:
        await storage.get("s1")

    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith("Could not connect to postgresql://app:***@127.0.0.1:1/claims")
    assert "Check that the PostgreSQL server is running" in message
    assert "s3cret" not in message
    await storage.close()


async def test_connect_waits_no_longer_than_connect_timeout() -> None:
    # 192.0.2.0/24 is reserved for documentation: nothing answers there.
    storage = PostgresSessionStorage("postgresql://app@192.0.2.1/claims", connect_timeout=0.3)
    started = time.monotonic()

    with pytest.raises(StorageError, match=r"connect_timeout=0\.3s"):
        await storage.get("s1")

    assert time.monotonic() - started < 3
    await storage.close()


async def test_a_missing_database_says_to_create_it(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/flowcore_no_such_database"

    with pytest.raises(StorageError, match="Create the database"):
        await PostgresSessionStorage.connect(url)
