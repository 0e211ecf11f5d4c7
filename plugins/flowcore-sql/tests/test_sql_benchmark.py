"""Both SQL backends run flowcore's storage benchmark suite: each against in-memory storage.

Under ``make test`` they run as benchmarks like any other (a few rounds each); with
``--flowcore-baseline FILE`` their ratios are gated (see docs/performance.md).
"""

from __future__ import annotations

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import Backend

from flowcore.testing import StorageBenchmark


class TestSqlStorageSpeed(StorageBenchmark):
    """Once on SQLite and once on PostgreSQL (the ``backend`` fixture's two params)."""

    rounds = 5

    @pytest.fixture
    async def storage(self, backend: Backend) -> SqlSessionStorage:
        return await backend.open()
