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
from datetime import timedelta
from pathlib import Path

import pytest
from flowcore_sql import PostgresSessionStorage, SqliteSessionStorage, SqlSessionStorage
from sql_backends import new_schema

from flowcore import Session, StorageError

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
        ("sqlite:///sessions.db?mode=rw", "mode='rw' is not a mode"),
        ("sqlite:///sessions.db?mode=ro&read_only=false", "gives both mode and read_only"),
        ("sqlite:///sessions.db?cache=shared", r"Unknown option 'cache' .* ttl, migrate"),
        ("sqlite:///sessions.db?ttl=1h", r"ttl='1h' in the query is not a number"),
        ("sqlite:///sessions.db?ttl=60&ttl=90", "gives the option 'ttl' 2 times"),
        ("sqlite:///sessions.db?create_dirs=maybe", "create_dirs='maybe' in the query is not"),
        ("sqlite:///sessions.db?synchronous=fast", "is not one of OFF, NORMAL, FULL, EXTRA"),
        ("sqlite:///sessions.db?engine_options=x", "Unknown option 'engine_options'"),
        ("sqlite:///:memory:?mode=ro", "read-only mode reads an existing database"),
        ("sqlite:///sessions.db?mode=ro&create_dirs=true", "rules out create_dirs"),
        ("sqlite:///sess\x00ions.db", "holds the NUL character"),
        ("sqlite:///sess\ud800ions.db", "which no file name can"),
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

    with pytest.raises(
        StorageError, match=r"does not exist. Create it first, or .*create_dirs"
    ) as caught:
        await storage.get("s1")
    assert f"sqlite:///{tmp_path}/no/such/dir/sessions.db" in str(caught.value)


async def test_create_dirs_creates_the_missing_directories_of_a_sqlite_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "no" / "such" / "dir" / "sessions.db"

    for url, options in [
        (f"sqlite:///{path}?create_dirs=true", {}),
        (f"sqlite:///{path}.2", {"create_dirs": True}),
    ]:
        async with open_url(url, **options) as storage:
            await storage.save(Session.new_from_task("s1", "start"))
            assert await storage.get("s1") is not None
    assert path.is_file()


def test_options_may_be_given_in_a_sqlite_url(tmp_path: Path) -> None:
    storage = open_url(
        f"sqlite:///{tmp_path}/sessions.db?ttl=90&migrate=false&busy_timeout=1.5&synchronous=full"
    )

    assert isinstance(storage, SqliteSessionStorage)
    assert storage.ttl == timedelta(seconds=90)
    assert storage.url == f"sqlite:///{tmp_path}/sessions.db"  # the options are not its address


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_size": 3}, r"Unknown option 'pool_size' for sqlite:///sessions.db; the options"),
        ({"busy_timeout": "5"}, r"busy_timeout='5' .* is not a number of seconds >= 0"),
        ({"busy_timeout": 1e300}, r"is not a number of seconds >= 0 and at most 2147483"),
        ({"synchronous": 3}, r"synchronous=3 .* is not one of OFF, NORMAL, FULL, EXTRA"),
        ({"migrate": "no"}, r"migrate='no' .* is not True or False"),
        ({"create_dirs": 1}, r"create_dirs=1 .* is not True or False"),
        ({"engine_options": 5}, r"engine_options=5 .* is not None or a mapping"),
        ({"engine_options": {"connect_args": 5}}, "is not None or a mapping"),
    ],
)
def test_a_bad_sqlite_option_is_a_storage_error_naming_it(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(StorageError, match=message):
        open_url("sqlite:///sessions.db", **options)


def test_an_option_given_in_the_url_and_as_a_keyword_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"given both in the query of .* and as a keyword"):
        open_url(f"sqlite:///{tmp_path}/sessions.db?ttl=60", ttl=30)


async def test_engine_options_sqlalchemy_refuses_are_a_storage_error(tmp_path: Path) -> None:
    storage = open_url(f"sqlite:///{tmp_path}/s.db", engine_options={"no_such_argument": 1})

    with pytest.raises(StorageError, match="SQLAlchemy refused the engine_options"):
        await storage.get("s1")


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


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@127.0.0.1:99999/db", "port 99999 is out of range"),
        ("postgresql://u@127.0.0.1:0/db", "port 0 is out of range"),
        ("postgresql://u@[::1/db", "write an IPv6 host in brackets"),
        ("postgresql://", "names no host and no database"),
        ("postgresql:///app", "names no host: .* Name both the host and the database"),
        ("postgresql://u@db.example", "names no database"),
        ("postgresql://u@db/app?foo=bar", r"Unknown option 'foo' .* ttl, migrate, .* host, port"),
        ("postgresql://u@db/app?options=-c%20x%3Dy", "Unknown option 'options'"),
        ("postgresql://u@db/app?ssl=bogus", "ssl='bogus' in the query is not one of disable"),
        ("postgresql://u@db/app?sslmode=require&ssl=disable", "both ssl and sslmode"),
        ("postgresql://u@db/app?target_session_attrs=x", "is not one of any, primary"),
        ("postgresql://u@db/app?command_timeout=abc", "command_timeout='abc' .* not a number"),
        ("postgresql://u@db/app?command_timeout=0", "is not a number of seconds > 0"),
        ("postgresql://u@db/app?pool_size=0", "pool_size='0' in the query is not an int >= 1"),
        ("postgresql://u@db/app?pool_pre_ping=sure", "pool_pre_ping='sure' .* not true or false"),
        ("postgresql://u@db/app?ttl=5&ttl=6", "gives the option 'ttl' 2 times"),
        ("postgresql://u@/app?host=h1:1&host=h2", "All ports are required"),
    ],
)
def test_a_postgresql_url_it_cannot_use_is_a_storage_error_at_once(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_url(url)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool_size": "5"}, r"pool_size='5' .* is not an int >= 1"),
        ({"max_overflow": -1}, r"max_overflow=-1 .* is not an int >= 0"),
        ({"connect_timeout": "x"}, "is not a number of seconds > 0"),
        ({"command_timeout": float("nan")}, "is not a number of seconds > 0"),
        ({"command_timeout": 1e300}, "and at most 2147483"),
        ({"pool_recycle": -5}, r"or -1 for never"),
        ({"schema": ""}, "is not None or a schema name"),
        ({"schema": "s" * 64}, "at most 63 bytes"),
        ({"schema": "a\x00b"}, "is not None or a schema name"),
        ({"prepared_statements": None}, "is not True or False"),
        ({"busy_timeout": 1}, "Unknown option 'busy_timeout'"),
    ],
)
def test_a_bad_postgresql_option_is_a_storage_error_naming_it(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        open_url("postgresql://app:s3cret@db.example/app", **options)
    assert "s3cret" not in str(caught.value)


def test_options_may_be_given_in_a_postgresql_url() -> None:
    storage = open_url(
        "postgresql://app:s3cret@db.example/app?ttl=60&schema=flow&pool_size=2&sslmode=require"
    )

    assert isinstance(storage, PostgresSessionStorage)
    assert storage.ttl == timedelta(seconds=60)
    assert storage.schema == "flow"
    assert storage.url == "postgresql://app:***@db.example/app?sslmode=require"


async def test_a_url_with_options_and_sslmode_connects(postgres_url: str) -> None:
    url = f"{postgres_url}?sslmode=disable&ttl=60&schema={new_schema()}&command_timeout=5"
    async with open_url(url) as storage:
        await storage.save(Session.new_from_task("s1", "start"))
        assert await storage.get_expiry("s1") is not None


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


def test_an_in_memory_sqlite_database_does_not_persist(tmp_path):
    assert open_url("sqlite:///:memory:").persistent is False
    assert open_url(f"sqlite:///{tmp_path}/claims.db").persistent is True
    assert open_url("postgresql://app@db.internal/claims").persistent is True
