"""Expiry and due sessions are judged by Redis's clock, not by the clock of whichever client runs.

flowcore's clock-skew suite runs a client process under ``faketime`` with its clock two hours
ahead, against the real Redis server, while this process (and the server) keep the true time:
a session with an hour left stays live, the expiries its saves set count from the server's now,
and a session that waits for a time an hour away is not yet due, through the storage and through
``flowcore sessions list --due``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
from flowcore_redis import RedisSessionStorage

from flowcore import SessionStorage
from flowcore.testing import ClockSkewConformance


class TestRedisClockSkew(ClockSkewConformance):
    load_plugins = "redis"

    @pytest.fixture
    async def storage(self, redis_url: str, prefix: str) -> AsyncIterator[RedisSessionStorage]:
        async with RedisSessionStorage(redis_url, prefix=prefix, ttl=self.ttl) as opened:
            yield opened

    @pytest.fixture
    def storage_url(self, redis_url: str, prefix: str) -> str:
        return f"{redis_url}?prefix={prefix}&ttl={int(self.ttl)}"

    @pytest.fixture(autouse=True)
    def _server(self, raw: redis.Redis) -> None:
        self.raw = raw

    async def expiry_of(self, storage: SessionStorage, session_id: str) -> datetime | None:
        assert isinstance(storage, RedisSessionStorage)
        left_ms = self.raw.pttl(storage.key_of(session_id))
        assert left_ms > 0, f"{session_id!r} has no expiry (pttl {left_ms})"
        return datetime.now(timezone.utc) + timedelta(milliseconds=left_ms)
