"""Both SQL backends pass flowcore's storage and concurrency conformance suites, as any backend
must."""

from __future__ import annotations

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import Backend

from flowcore.testing import (
    ConcurrencyConformance,
    RawBlobWriter,
    StorageConformance,
    StorageFactory,
)


class OnEachBackend:
    """Run once on SQLite and once on PostgreSQL (the ``backend`` fixture's two params)."""

    @pytest.fixture
    async def storage(self, backend: Backend) -> SqlSessionStorage:
        return await backend.open()

    @pytest.fixture
    def new_storage(self, backend: Backend) -> StorageFactory:
        """More storages on the database, each with its own connections (and for SQLite its own
        thread), as separate processes."""
        return backend.storage


class TestSqlStorageConformance(OnEachBackend, StorageConformance):
    @pytest.fixture
    def put_raw_blob(self, backend: Backend, storage: SqlSessionStorage) -> RawBlobWriter:
        return backend.put_row


class TestSqlConcurrency(OnEachBackend, ConcurrencyConformance):
    pass
