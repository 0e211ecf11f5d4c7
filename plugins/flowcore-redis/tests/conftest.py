"""Fixtures for flowcore-redis's tests: the shared Redis server, and servers of a test's own.

A test that needs the shared server is skipped when it cannot be reached, or fails instead when
``FLOWCORE_REQUIRE_SERVICES`` is set (as CI sets it). See ``redis_servers`` for the servers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator

import flowcore_redis.plugin
import pytest
import redis
from flowcore_redis import RedisSessionStorage
from redis_servers import (
    REDIS_URL,
    PrivateRedis,
    new_prefix,
    remove_keys,
    require,
    run_id,
    unreachable,
)

from flowcore.testing import plugin_registered


@pytest.fixture(autouse=True)
def redis_schemes_served() -> Iterator[None]:
    """``open_storage`` serves redis:// in every test: through the entry point when the test
    run loads the installed plugins, else through the plugin module, registered for the test
    (flowcore's own tests load none)."""
    with plugin_registered(flowcore_redis.plugin, "redis-under-test"):
        yield


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The shared Redis server's URL, once it has answered (skip, or fail, when it does not)."""
    problem = unreachable()
    where = REDIS_URL.split("@")[-1]
    if problem is not None:
        require(f"Redis at {where} is unreachable ({problem}): start it (see .ci/run)")
    started = run_id()
    yield REDIS_URL
    # Other test runs share this server: no test may restart it (PrivateRedis makes a server
    # a test may restart).
    assert run_id() == started, (
        f"The shared Redis server at {where} was restarted during this test run: a test that "
        "restarts a server must use one of its own (PrivateRedis)"
    )


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared server; its keys are removed afterwards."""
    chosen = new_prefix()
    yield chosen
    remove_keys(chosen)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client of the shared server, to read and plant keys behind a storage."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def storage(redis_url: str, prefix: str) -> AsyncIterator[RedisSessionStorage]:
    """A connected storage with no sessions, under the test's prefix."""
    async with RedisSessionStorage(redis_url, prefix=prefix) as opened:
        yield opened


@pytest.fixture
def private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    """``private_redis(*options)``: a started redis-server of the test's own, removed afterwards."""
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        require("This test needs redis-server to start a server of its own")
    servers: list[PrivateRedis] = []

    def start(*options: str) -> PrivateRedis:
        server = PrivateRedis(*options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.remove()
