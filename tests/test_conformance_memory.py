"""InMemorySessionStorage passes the storage and concurrency conformance suites every backend
runs."""

from __future__ import annotations

import pytest

from flowcore import InMemorySessionStorage
from flowcore.testing import ConcurrencyConformance, StorageConformance


class InMemory:
    @pytest.fixture
    async def storage(self):
        async with InMemorySessionStorage() as storage:
            yield storage


class TestInMemorySessionStorage(InMemory, StorageConformance):
    @pytest.fixture
    def put_raw_blob(self, storage):
        def put(session_id: str, version: int, blob: bytes) -> None:
            storage._rows[session_id] = (version, blob)

        return put


class TestInMemoryConcurrency(InMemory, ConcurrencyConformance):
    """One storage shared by every runner: the suite's default ``new_storage``."""
