"""Both SQL backends pass flowcore's storage conformance suite, as any backend must."""

from __future__ import annotations

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import Backend

from flowcore.testing import RawBlobWriter, StorageConformance


class TestSqlStorageConformance(StorageConformance):
    """Run once on SQLite and once on PostgreSQL (the ``backend`` fixture's two params)."""

    @pytest.fixture
    async def storage(self, backend: Backend) -> SqlSessionStorage:
        return await backend.open()

    @pytest.fixture
    def put_raw_blob(self, backend: Backend, storage: SqlSessionStorage) -> RawBlobWriter:
        return backend.put_row
