"""The storage benchmark suite on the in-memory backend: the kit runs on any backend."""

from __future__ import annotations

import pytest

from flowcore import InMemorySessionStorage
from flowcore.testing import StorageBenchmark


class TestInMemorySpeed(StorageBenchmark):
    rounds = 3

    @pytest.fixture
    def storage(self) -> InMemorySessionStorage:
        return InMemorySessionStorage()
