"""`flowcore sessions list --due`: the sessions whose wait for a time is over, from a shell.

Run as a user runs it, in a process of its own, on a SQLite file that another process filled
(an in-memory storage would be gone by then).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flowcore_sql import MIGRATIONS
from flowcore_sql._schema import migrations
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable

from flowcore import (
    FlowRunner,
    GraphBuilder,
    NextAction,
    Session,
    TaskResult,
    open_storage,
    register_plugin,
    task,
)
from flowcore._cli import main

from .helpers import UnlistedPlugin
from .helpers import flowcore_command as flowcore

UTC = timezone.utc


def waiting(session_id: str, wake_in: timedelta | None) -> Session:
    session = Session.new_from_task(session_id, "remind", graph_id="reminders")
    session.wake_at = None if wake_in is None else datetime.now(UTC) + wake_in
    return session


@pytest.fixture
def db(installed_plugins, tmp_path: Path) -> str:
    """A SQLite file holding sessions due now, one due later, one waiting for nothing and one
    due but expired; its URL."""
    installed_plugins("sql")
    url = f"sqlite:///{tmp_path / 'reminders.db'}"

    async def fill() -> None:
        async with open_storage(url) as storage:
            await storage.save(waiting("due-a-minute-ago", timedelta(minutes=-1)))
            await storage.save(waiting("due-an-hour-ago", timedelta(hours=-1)))
            await storage.save(waiting("due-in-an-hour", timedelta(hours=1)))
            await storage.save(waiting("waits-for-nothing", None))
            await storage.save(waiting("expired", timedelta(hours=-2)))
            await storage.set_expiry("expired", 0)

    asyncio.run(fill())
    return url


def test_list_due_prints_the_due_ids_earliest_first(db: str, tmp_path: Path) -> None:
    assert flowcore("sessions", "list", "--due", "--storage", db, cwd=tmp_path) == (
        0,
        "due-an-hour-ago\ndue-a-minute-ago\n",
        "",
    )


def test_list_due_takes_limit_and_json(db: str, tmp_path: Path) -> None:
    code, out, err = flowcore(
        "sessions", "list", "--due", "--limit", "1", "--json", "--storage", db, cwd=tmp_path
    )

    assert (code, err) == (0, "")
    assert json.loads(out) == ["due-an-hour-ago"]


def test_list_due_on_a_database_with_none_due_prints_nothing(installed_plugins, tmp_path: Path):
    installed_plugins("sql")
    url = f"sqlite:///{tmp_path / 'quiet.db'}"

    async def fill() -> None:
        async with open_storage(url) as storage:
            await storage.save(waiting("later", timedelta(days=1)))

    asyncio.run(fill())

    assert flowcore("sessions", "list", "--due", "--storage", url, cwd=tmp_path) == (0, "", "")
    assert flowcore("sessions", "list", "--due", "--json", "--storage", url, cwd=tmp_path)[1] == (
        "[]\n"
    )


@task("ask")
def ask(ctx):
    return TaskResult("reminder set", NextAction.WaitUntil(timedelta(0)))


@task("remind")
def remind(ctx):
    return TaskResult("reminded", NextAction.End)


def test_a_session_a_step_scheduled_is_listed_due_until_a_step_wakes_it(
    installed_plugins, tmp_path: Path
) -> None:
    installed_plugins("sql")
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    graph = GraphBuilder("reminders").add_task(ask).add_task(remind).add_edge("ask", "remind")

    async def step() -> None:
        async with open_storage(url) as storage:
            runner = FlowRunner(graph.build(), storage)
            if await storage.get("claim-7") is None:
                await runner.create_session("claim-7")
            await runner.run("claim-7")

    asyncio.run(step())  # waits until now: due at once
    assert flowcore("sessions", "list", "--due", "--storage", url, cwd=tmp_path)[1] == "claim-7\n"

    asyncio.run(step())  # wakes it: remind runs, the session completes
    assert flowcore("sessions", "list", "--due", "--storage", url, cwd=tmp_path)[1] == ""


def test_due_with_after_is_refused_as_a_bad_command_line(db: str, tmp_path: Path) -> None:
    code, out, err = flowcore(
        "sessions", "list", "--due", "--after", "a", "--storage", db, cwd=tmp_path
    )

    assert (code, out) == (2, "")
    assert err == (
        "flowcore: error: sessions list: --after pages through the sorted ids; --due lists the "
        "due sessions earliest first, to take with --limit N\n"
    )


# -- a database an earlier flowcore-sql made -------------------------------------------------------


@pytest.fixture
def older_db(installed_plugins, tmp_path: Path) -> Path:
    """A SQLite file as flowcore-sql with its first migration only left it: no wake_at yet."""
    installed_plugins("sql")
    path = tmp_path / "older.db"
    dialect = sqlite.dialect()
    with sqlite3.connect(path) as connection:
        for statement in [
            *MIGRATIONS[0].sql(dialect),
            str(CreateTable(migrations).compile(dialect=dialect)),
        ]:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO flowcore_migrations VALUES (1, ?, '2024-01-01 00:00:00.000000')",
            (MIGRATIONS[0].description,),
        )
    connection.close()
    return path


def test_list_due_on_an_older_database_migrates_it_first(older_db: Path) -> None:
    url = f"sqlite:///{older_db}"

    assert flowcore("sessions", "list", "--due", "--storage", url, cwd=older_db.parent) == (
        0,
        "",
        "",
    )
    assert flowcore("db", "migrate", url, cwd=older_db.parent) == (0, f"{url} is up to date\n", "")


def test_list_due_on_an_older_database_opened_read_only_says_to_migrate(older_db: Path) -> None:
    url = f"sqlite:///{older_db}"

    code, out, err = flowcore(
        "sessions", "list", "--due", "--storage", f"{url}?mode=ro", cwd=older_db.parent
    )

    assert (code, out) == (1, "")
    assert err.startswith("flowcore: StorageError: Could not find the due sessions in ")
    assert "a read-only storage applies no migration" in err
    assert "flowcore db migrate URL" in err
    assert err.count("\n") == 1


def test_db_migrate_on_an_older_database_applies_what_it_lacks(older_db: Path) -> None:
    url = f"sqlite:///{older_db}"

    assert flowcore("db", "migrate", url, cwd=older_db.parent) == (
        0,
        f"applied migration 2 to {url}\n",
        "",
    )


# -- a backend that cannot tell --------------------------------------------------------------------


def test_a_backend_without_due_sessions_says_so_in_one_line(capsys) -> None:
    register_plugin(UnlistedPlugin())

    code = main(["sessions", "list", "--due", "--storage", "unlisted://"])

    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        "flowcore: the unlisted:// backend (Unlisted) cannot tell which sessions are due (it "
        "does not implement due_sessions); see when one wakes with: flowcore sessions show ID "
        "--storage URL\n"
    )
