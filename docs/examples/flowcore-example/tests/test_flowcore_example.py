"""The example plugin's own tests, as a third-party plugin writes them."""

from __future__ import annotations

import itertools

import pytest
from flowcore_example import NamedMemoryStorage

from flowcore.testing import ConcurrencyConformance, StorageConformance, StorageFactory

_names = itertools.count()


class ANewStore:
    """`storage` yields a fresh, empty store; `new_storage` more storages on it (every instance of
    a name shares its sessions)."""

    @pytest.fixture
    async def storage(self):
        async with NamedMemoryStorage(f"store-{next(_names)}") as storage:
            yield storage

    @pytest.fixture
    def new_storage(self, storage) -> StorageFactory:
        return lambda: NamedMemoryStorage(storage.name)


class TestNamedMemoryStorage(ANewStore, StorageConformance):
    """The storage contract every backend passes."""

    @pytest.fixture
    def put_raw_blob(self, storage):
        def put(session_id: str, version: int, blob: bytes) -> None:
            storage._rows[session_id] = (version, blob)

        return put


class TestNamedMemoryConcurrency(ANewStore, ConcurrencyConformance):
    """Many runners stepping one store at once."""
