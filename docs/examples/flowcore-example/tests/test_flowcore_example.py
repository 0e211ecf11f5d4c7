"""The example plugin's own tests, as a third-party plugin writes them."""

from __future__ import annotations

import itertools

import pytest
from flowcore_example import NamedMemoryStorage

from flowcore.testing import ConcurrencyConformance, StorageConformance, StorageFactory

_names = itertools.count()


class TestNamedMemoryStorage(StorageConformance):
    """The storage contract every backend passes; `storage` yields a fresh, empty one."""

    @pytest.fixture
    async def storage(self):
        async with NamedMemoryStorage(f"conformance-{next(_names)}") as storage:
            yield storage

    @pytest.fixture
    def put_raw_blob(self, storage):
        def put(session_id: str, version: int, blob: bytes) -> None:
            storage._rows[session_id] = (version, blob)

        return put


class TestNamedMemoryConcurrency(ConcurrencyConformance):
    """Many runners on one store; every instance of a name shares its sessions."""

    @pytest.fixture
    async def storage(self):
        async with NamedMemoryStorage(f"concurrency-{next(_names)}") as storage:
            yield storage

    @pytest.fixture
    def new_storage(self, storage) -> StorageFactory:
        return lambda: NamedMemoryStorage(storage.name)
