"""Fixtures for flowcore-sql's tests: each SQL backend in turn, on a real database.

A test that needs PostgreSQL is skipped when the server cannot be reached, or fails instead when
``FLOWCORE_REQUIRE_SERVICES`` is set (as CI sets it). See ``sql_backends`` for the databases.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import (
    BACKENDS,
    POSTGRES_URL,
    Backend,
    drop_run_schemas,
    run_sync,
    server_started_at,
    unreachable,
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The PostgreSQL URL, once the server has answered (skip, or fail, when it does not)."""
    problem = unreachable()
    if problem is not None:
        where = where_of(POSTGRES_URL)
        if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
            pytest.fail(
                f"PostgreSQL at {where} is unreachable ({problem}), and "
                "FLOWCORE_REQUIRE_SERVICES is set: start the server (see .ci/run)"
            )
        pytest.skip(
            f"PostgreSQL at {where} is unreachable ({problem}); start it, or set "
            "FLOWCORE_REQUIRE_SERVICES=1 to make this a failure"
        )
    started = server_started_at()
    yield POSTGRES_URL
    run_sync(drop_run_schemas())
    # Other test runs share this server: no test may restart it (private_postgres makes a
    # server a test may restart).
    assert server_started_at() == started, (
        f"The shared PostgreSQL server at {where_of(POSTGRES_URL)} was restarted during this "
        "test run: a test that restarts a server must use one of its own (private_postgres)"
    )


def where_of(url: str) -> str:
    return url.split("@")[-1]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """Each SQL backend in turn: its name, and the server's URL for PostgreSQL."""
    if request.param == "postgresql":
        return request.param, request.getfixturevalue("postgres_url")
    return request.param, None


@pytest.fixture
async def backend(database: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Backend]:
    """Each SQL backend in turn, with no sessions stored (PostgreSQL only when it answers)."""
    name, url = database
    chosen = Backend(name, tmp_path, url)
    await chosen.empty()
    yield chosen
    await chosen.close()


@pytest.fixture
async def storage(backend: Backend) -> SqlSessionStorage:
    """A connected, empty storage of each backend."""
    return await backend.open()
