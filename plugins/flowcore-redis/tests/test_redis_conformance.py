"""RedisSessionStorage passes flowcore's storage and concurrency conformance suites, as any
backend must."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
from flowcore_redis import RedisSessionStorage

from flowcore.testing import (
    ConcurrencyConformance,
    RawBlobWriter,
    StorageConformance,
    StorageFactory,
)


class OnTheSharedServer:
    """On the shared server, under a prefix of each test's own."""

    @pytest.fixture
    async def storage(self, redis_url: str, prefix: str) -> AsyncIterator[RedisSessionStorage]:
        async with RedisSessionStorage(redis_url, prefix=prefix) as opened:
            yield opened

    @pytest.fixture
    def new_storage(self, redis_url: str, prefix: str) -> StorageFactory:
        """More storages on the prefix, each with its own connections, as separate processes."""
        return lambda: RedisSessionStorage(redis_url, prefix=prefix)


class TestRedisStorageConformance(OnTheSharedServer, StorageConformance):
    @pytest.fixture
    def put_raw_blob(self, storage: RedisSessionStorage, raw: redis.Redis) -> RawBlobWriter:
        def put(session_id: str, version: int, blob: bytes) -> None:
            raw.hset(storage.key_of(session_id), mapping={"v": version, "b": blob})
            raw.zadd(f"{storage.prefix}sessions", {session_id.encode(): 0})

        return put


class TestRedisConcurrency(OnTheSharedServer, ConcurrencyConformance):
    pass
