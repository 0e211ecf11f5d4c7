"""RedisSessionStorage runs flowcore's storage benchmark suite, against in-memory storage.

Under ``make test`` they run as benchmarks like any other (a few rounds each); with
``--flowcore-baseline FILE`` their ratios are gated (see docs/performance.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from flowcore_redis import RedisSessionStorage

from flowcore.testing import StorageBenchmark


class TestRedisStorageSpeed(StorageBenchmark):
    """On the shared server, under a prefix of each test's own."""

    rounds = 5

    @pytest.fixture
    async def storage(self, redis_url: str, prefix: str) -> AsyncIterator[RedisSessionStorage]:
        async with RedisSessionStorage(redis_url, prefix=prefix) as opened:
            yield opened
