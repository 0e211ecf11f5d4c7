"""Expiry and due sessions are judged by Redis's clock, not by the clock of whichever client runs.

A client process runs under ``faketime`` with its clock two hours ahead, against the real Redis
server, while this process (and the server) keep the true time. To that client, a session with
an hour left must still be live: visible, listed, not replaced by a create; the expiries its
saves set count from the server's now; and a session that waits for a time an hour away is not
yet due, through the storage and through ``flowcore sessions list --due``.
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
import redis
from flowcore_redis import RedisSessionStorage
from redis_servers import require

from flowcore import Session

AHEAD = timedelta(hours=2)

CLIENT = textwrap.dedent(
    """
    import asyncio, json, os, time
    from flowcore import Session, SessionConflict
    from flowcore_redis import RedisSessionStorage

    async def main():
        seen = {"clock": time.time()}
        url, prefix = os.environ["TEST_URL"], os.environ["TEST_PREFIX"]
        async with RedisSessionStorage(url, prefix=prefix, ttl=3600) as storage:
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
        require("This test needs the faketime command (apt-get install faketime)")
    assert found is not None
    return found


def ahead(faketime: str, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with its wall clock AHEAD of the true time."""
    return subprocess.run(
        [faketime, "-f", f"+{int(AHEAD.total_seconds())}s", *command],
        env={**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1", **env},  # timeouts stay sane
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def store_waiting(storage: RedisSessionStorage) -> None:
    for session_id, wait in (("woke", -60), ("waits", 3600)):
        waiting = Session.new_from_task(session_id, "start")
        waiting.wake_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
        await storage.save(waiting)


async def test_a_client_whose_clock_is_ahead_neither_expires_nor_replaces_live_sessions(
    redis_url: str, prefix: str, raw: redis.Redis, faketime: str
) -> None:
    async with RedisSessionStorage(redis_url, prefix=prefix, ttl=3600) as storage:
        await storage.save(Session.new_from_task("live", "start", context={"by": "true clock"}))
        await store_waiting(storage)
        started = time.time()

        done = ahead(faketime, sys.executable, "-c", CLIENT, TEST_URL=redis_url, TEST_PREFIX=prefix)

        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["clock"] > started + AHEAD.total_seconds() - 60
        assert seen["live_seen"] is True
        assert seen["due"] == ["woke"]  # "waits" has an hour to go by the server's clock
        assert seen["listed"] == ["live", "waits", "woke"]
        assert seen["create_of_live"] == "conflict"
        assert seen["cleaned_up"] == 0
        live = await storage.get("live")
        assert live is not None
        assert live.version == 2  # its own step, and not the create
        assert live.context.get("by") == "true clock"
        # Expiries its saves set count from the server's now: an hour, not an hour ago.
        for session_id in ("live", "created_ahead"):
            left = raw.pttl(storage.key_of(session_id)) / 1000
            assert 3600 - 60 < left <= 3600


async def test_the_command_lists_the_sessions_due_by_the_servers_clock(
    redis_url: str, prefix: str, faketime: str
) -> None:
    async with RedisSessionStorage(redis_url, prefix=prefix) as storage:
        await store_waiting(storage)

    done = ahead(
        faketime,
        sys.executable, "-m", "flowcore", "sessions", "list", "--due",
        "--storage", f"{redis_url}?prefix={prefix}",
        FLOWCORE_LOAD_PLUGINS="redis",
    )  # fmt: skip

    # "waits" has an hour to go by the server's clock, whatever the command's clock says.
    assert (done.returncode, done.stdout, done.stderr) == (0, "woke\n", "")
