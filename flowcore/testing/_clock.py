"""The clock-skew suite: a client whose clock is ahead, against a backend whose server keeps the
time (see ``flowcore.testing``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flowcore._session import Session
from flowcore._storage import SessionStorage

from ._suite import StorageSuite

__all__ = ["ClockSkewConformance"]

AHEAD = timedelta(hours=2)
"""How far ahead of the true time the client's wall clock runs."""

_CLIENT = textwrap.dedent(
    """
    import asyncio, json, os, time
    from flowcore import Session, SessionConflict, open_storage

    async def main():
        seen = {"clock": time.time(), "listed": None, "cleaned_up": None}
        async with open_storage(os.environ["FLOWCORE_TEST_STORAGE_URL"]) as storage:
            seen["due"] = await storage.due_sessions()
            live = await storage.get("live")
            seen["live_seen"] = live is not None
            try:
                seen["listed"] = await storage.list_sessions()
            except NotImplementedError:
                pass
            try:
                await storage.save(Session.new_from_task("live", "start", context={"by": "ahead"}))
                seen["create_of_live"] = "stored"
            except SessionConflict:
                seen["create_of_live"] = "conflict"
            if live is not None:
                await storage.save(live)  # a step of the live session
            if hasattr(storage, "cleanup"):
                seen["cleaned_up"] = await storage.cleanup()
            await storage.save(Session.new_from_task("created_ahead", "start"))
        print(json.dumps(seen))

    asyncio.run(main())
    """
)


class ClockSkewConformance(StorageSuite):
    """A backend whose server keeps the time judges expiry and due sessions by the server's
    clock, not by the clock of whichever client runs. Needs the ``faketime`` command (the
    Debian package ``faketime``): a client process runs with its wall clock two hours ahead.

    Subclass it (as ``Test...``) and override ``storage`` as for ``StorageConformance``, and
    ``storage_url``: the URL, options included (such as ``?ttl=3600``), by which another process
    opens the same store with ``flowcore.open_storage``, giving sessions ``ttl`` seconds where
    they expire. Override ``expiry_of`` when sessions
    expire, and ``plant_expired`` when ``cleanup`` deletes expired sessions. Set
    ``load_plugins`` to the plugin's name when the test process restricts which plugins load.

    Run without ``faketime``, the tests skip, or fail when ``FLOWCORE_REQUIRE_SERVICES`` is set.
    """

    load_plugins: str | None = None
    """``FLOWCORE_LOAD_PLUGINS`` for the processes the suite starts; None: as this one's."""

    ttl: float = 3600
    """The seconds a save gives a session to live, as ``storage_url`` sets them (checked only
    where ``expiry_of`` tells expiries)."""

    @pytest.fixture
    def storage_url(self) -> str:
        """The URL by which another process opens the store of ``storage``. Must be
        overridden."""
        pytest.fail(
            f"{type(self).__name__} must override the `storage_url` fixture to give the URL "
            "another process opens the same store by"
        )

    @pytest.fixture
    def faketime(self) -> str:
        """The ``faketime`` command."""
        found = shutil.which("faketime")
        if found is None:
            reason = "This test needs the faketime command (apt-get install faketime)"
            if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
                pytest.fail(f"{reason}, and FLOWCORE_REQUIRE_SERVICES is set")
            pytest.skip(reason)
        return found

    async def expiry_of(self, storage: SessionStorage, session_id: str) -> datetime | None:
        """When ``session_id`` expires, by the server; None (the default) when sessions do
        not expire, which leaves out the expiry checks."""
        return None

    async def plant_expired(self, storage: SessionStorage) -> str | None:
        """Store a session that expired a moment ago by the server's clock, and return its id;
        None (the default) when ``cleanup`` has nothing to delete (the server expires sessions
        itself, or they never expire)."""
        return None

    def run_ahead(
        self, faketime: str, *command: str, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with its wall clock ``AHEAD`` of the true time (its monotonic
        clock, and so its timeouts, keep the true time); for a backend's own extra checks."""
        extra = {"FAKETIME_DONT_FAKE_MONOTONIC": "1", **env}
        if self.load_plugins is not None:
            extra["FLOWCORE_LOAD_PLUGINS"] = self.load_plugins
        return subprocess.run(
            [faketime, "-f", f"+{int(AHEAD.total_seconds())}s", *command],
            env={**os.environ, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    async def test_a_client_whose_clock_is_ahead_neither_expires_nor_replaces_live_sessions(
        self, storage: SessionStorage, storage_url: str, faketime: str
    ) -> None:
        await storage.save(Session.new_from_task("live", "start", context={"by": "true clock"}))
        await _store_waiting(storage)
        expired = await self.plant_expired(storage)
        started = time.time()

        done = self.run_ahead(
            faketime, sys.executable, "-c", _CLIENT, FLOWCORE_TEST_STORAGE_URL=storage_url
        )

        assert done.returncode == 0, done.stderr
        seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["clock"] > started + AHEAD.total_seconds() - 60  # it did run ahead
        assert seen["live_seen"] is True
        assert seen["due"] == ["woke"]  # "waits" has an hour to go by the server's clock
        if seen["listed"] is not None:  # listing is optional for a backend
            assert seen["listed"] == ["live", "waits", "woke"]
        assert seen["create_of_live"] == "conflict"
        if seen["cleaned_up"] is not None:  # the session that had expired, and no other
            assert seen["cleaned_up"] == (0 if expired is None else 1)
        live = await storage.get("live")
        assert live is not None
        assert live.version == 2  # its own step, and not the create
        assert live.context.get("by") == "true clock"
        # Expiries its saves set count from the server's now, not from two hours ahead.
        now = datetime.now(timezone.utc)
        for session_id in ("live", "created_ahead"):
            expires = await self.expiry_of(storage, session_id)
            if expires is not None:
                assert abs(expires - (now + timedelta(seconds=self.ttl))) < timedelta(minutes=1)

    async def test_the_command_lists_the_sessions_due_by_the_servers_clock(
        self, storage: SessionStorage, storage_url: str, faketime: str
    ) -> None:
        await _store_waiting(storage)

        done = self.run_ahead(
            faketime,
            sys.executable, "-m", "flowcore", "sessions", "list", "--due",
            "--storage", storage_url,
        )  # fmt: skip

        # "waits" has an hour to go by the server's clock, whatever the command's clock says.
        assert (done.returncode, done.stdout, done.stderr) == (0, "woke\n", "")


async def _store_waiting(storage: SessionStorage) -> None:
    """ "woke" waited for a minute ago, "waits" for an hour from now (the true time)."""
    for session_id, wait in (("woke", -60), ("waits", 3600)):
        waiting = Session.new_from_task(session_id, "start")
        waiting.wake_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
        await storage.save(waiting)
