"""InMemorySessionStorage passes the storage conformance suite every backend runs."""

from __future__ import annotations

import pytest

from flowcore import InMemorySessionStorage
from flowcore.testing import StorageConformance


class TestInMemorySessionStorage(StorageConformance):
    @pytest.fixture
    async def storage(self):
        async with InMemorySessionStorage() as storage:
            yield storage

    @pytest.fixture
    def put_raw_blob(self, storage):
        def put(session_id: str, version: int, blob: bytes) -> None:
            storage._rows[session_id] = (version, blob)

        return put
