"""Expiry is judged by the database's clock, not by the clock of whichever client runs.

A client process runs under ``faketime`` with its clock two hours ahead, against the real
PostgreSQL server, while this process (and the server) keep the true time. To that client, a
session with an hour left must still be live: visible, listed, not replaced by a create and not
deleted by a cleanup; the expiries it sets count from the server's now; and a session that waits
for a time an hour away is not yet due.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
from flowcore_sql import PostgresSessionStorage
from sql_backends import new_schema, run_sync

from flowcore import Session

AHEAD = timedelta(hours=2)

CLIENT = textwrap.dedent(
    """
    import asyncio, json, os, time
    from flowcore import Session, SessionConflict, SessionNotFound
    from flowcore_sql import PostgresSessionStorage

    async def main():
        seen = {"clock": time.time()}
        storage = PostgresSessionStorage(
            os.environ["TEST_URL"], schema=os.environ["TEST_SCHEMA"], ttl=3600
        )
        async with storage:
            seen["due"] = await storage.due_sessions()
            live = await storage.get("live")
            seen["live_seen"] = live is not None
            seen["listed"] = await storage.list_sessions()
            try:
                await storage.save(Session.new_from_task("live", "start", context={"by": "ahead"}))
                seen["create_of_live"] = "stored"
            except SessionConflict:
                seen["create_of_live"] = "conflict"
            if live is not None:
                await storage.save(live)  # a step of the live session
            seen["cleaned_up"] = await storage.cleanup()
            try:
                await storage.set_expiry("other", 600)
            except SessionNotFound:
                seen["other_gone"] = True
            await storage.save(Session.new_from_task("created_ahead", "start"))
        print(json.dumps(seen))

    asyncio.run(main())
    """
)


@pytest.fixture
def faketime() -> str:
    """The faketime command (the Debian package faketime)."""
    found = shutil.which("faketime")
    if found is None:
        reason = "needs the faketime command (apt-get install faketime)"
        if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
            pytest.fail(f"This test {reason}, and FLOWCORE_REQUIRE_SERVICES is set")
        pytest.skip(f"This test {reason}")
    return found


def run_ahead(faketime: str, url: str, schema: str) -> dict[str, object]:
    """Run CLIENT with its clock AHEAD of the true time; what it saw."""
    env = {
        **os.environ,
        "TEST_URL": url,
        "TEST_SCHEMA": schema,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # only the wall clock moves; timeouts stay sane
    }
    offset = f"+{int(AHEAD.total_seconds())}s"
    done = subprocess.run(
        [faketime, "-f", offset, sys.executable, "-c", CLIENT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


async def test_a_client_whose_clock_is_ahead_neither_expires_nor_replaces_live_sessions(
    postgres_url: str, faketime: str
) -> None:
    schema = new_schema()
    async with PostgresSessionStorage(postgres_url, schema=schema, ttl=3600) as storage:
        await storage.save(Session.new_from_task("live", "start", context={"by": "true clock"}))
        await storage.save(Session.new_from_task("other", "start"))
        await storage.save(Session.new_from_task("dead", "start"))
        await storage.set_expiry("dead", -1)  # expired a second ago, by the server's clock
        for session_id, wait in (("woke", -60), ("waits", 3600)):
            waiting = Session.new_from_task(session_id, "start")
            waiting.wake_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
            await storage.save(waiting)
        started = time.time()

        seen = run_ahead(faketime, postgres_url, schema)

        assert float(seen["clock"]) > started + AHEAD.total_seconds() - 60  # type: ignore[arg-type]
        assert seen["live_seen"] is True
        assert seen["due"] == ["woke"]  # "waits" has an hour to go by the server's clock
        assert seen["listed"] == ["live", "other", "waits", "woke"]
        assert seen["create_of_live"] == "conflict"
        assert seen["cleaned_up"] == 1  # the session that had expired, and no other
        live = await storage.get("live")
        assert live is not None
        assert live.version == 2  # its own step, and not the create
        assert live.context.get("by") == "true clock"
        now = datetime.now(timezone.utc)
        other = await storage.get_expiry("other")
        created = await storage.get_expiry("created_ahead")
        assert other is not None
        assert created is not None
        # Counted from the server's now, not from the client's two hours ahead.
        assert abs(other - (now + timedelta(seconds=600))) < timedelta(minutes=1)
        assert abs(created - (now + timedelta(hours=1))) < timedelta(minutes=1)


def test_the_command_lists_the_sessions_due_by_the_servers_clock(
    postgres_url: str, faketime: str
) -> None:
    schema = new_schema()

    async def store() -> None:
        async with PostgresSessionStorage(postgres_url, schema=schema) as storage:
            for session_id, wait in (("woke", -60), ("waits", 3600)):
                waiting = Session.new_from_task(session_id, "start")
                waiting.wake_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
                await storage.save(waiting)

    run_sync(store())
    ahead = [faketime, "-f", f"+{int(AHEAD.total_seconds())}s"]
    command = ["sessions", "list", "--due", "--storage", f"{postgres_url}?schema={schema}"]

    done = subprocess.run(
        [*ahead, sys.executable, "-m", "flowcore", *command],
        env={**os.environ, "FLOWCORE_LOAD_PLUGINS": "sql", "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # "waits" has an hour to go by the server's clock, whatever the command's clock says.
    assert (done.returncode, done.stdout, done.stderr) == (0, "woke\n", "")
