"""``StorageSuite``: what every suite a backend subclasses has, its one required fixture."""

from __future__ import annotations

import pytest

from flowcore._storage import SessionStorage

__all__ = ["StorageSuite"]


class StorageSuite:
    """A pytest class of asyncio tests of one backend, given by the ``storage`` fixture."""

    pytestmark = pytest.mark.asyncio

    @pytest.fixture
    def storage(self) -> SessionStorage:
        """A fresh, empty backend. Every subclass must override this fixture."""
        pytest.fail(
            f"{type(self).__name__} must override the `storage` fixture to yield a fresh, "
            "empty SessionStorage"
        )
