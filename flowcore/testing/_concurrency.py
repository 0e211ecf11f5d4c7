"""The concurrency suite: many runners on one store, as many processes would be (see
``flowcore.testing``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from flowcore._errors import SessionConflict
from flowcore._runner import FlowRunner
from flowcore._storage import SessionStorage
from flowcore._values import ExecutionResult

from ._counter import counter_graph
from ._suite import StorageSuite

__all__ = ["ConcurrencyConformance", "StorageFactory"]

StorageFactory = Callable[[], SessionStorage]
"""``new_storage()``: one more storage on the store of ``storage``, not yet connected."""


_COUNTER = counter_graph()


@contextlib.asynccontextmanager
async def _runners(
    storage: SessionStorage, new_storage: StorageFactory, count: int, storages: int = 4
) -> AsyncIterator[list[FlowRunner]]:
    """``count`` runners of the counter, spread over ``storages`` storages: ``storage``, and
    more made by ``new_storage``, connected for the block and closed after it."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [storage]
        while len(opened) < storages:
            made = new_storage()
            opened.append(made if made is storage else await stack.enter_async_context(made))
        yield [FlowRunner(_COUNTER, opened[i % storages]) for i in range(count)]


async def _step_until_committed(runner: FlowRunner, session_id: str) -> int:
    """Step ``session_id`` once, trying again after each conflict; how many conflicts it met."""
    conflicts = 0
    while True:
        try:
            await runner.run(session_id)
            return conflicts
        except SessionConflict:
            conflicts += 1


class ConcurrencyConformance(StorageSuite):
    """Many runners stepping sessions of one store at once: every step is committed once or
    refused with SessionConflict, and no update is lost. Subclass it (as ``Test...``) and
    override ``storage``, as for ``StorageConformance``.

    Override ``new_storage`` too when each process of an application opens a storage of its
    own on one store (a database, a server): the runners are then spread over several storages,
    each with its own connections. By default they all share ``storage``.
    """

    @pytest.fixture
    def new_storage(self, storage: SessionStorage) -> StorageFactory:
        """``new_storage()``: one more storage on the same store as ``storage``, not yet
        connected (the suite connects it with ``async with`` and closes it).

        The default gives ``storage`` itself, for a backend with no store to share.
        """
        return lambda: storage

    async def test_64_concurrent_runs_of_one_session_commit_or_conflict(
        self, storage: SessionStorage, new_storage: StorageFactory
    ) -> None:
        async with _runners(storage, new_storage, 64) as runners:
            await runners[0].create_session("hot")

            outcomes = await asyncio.gather(
                *(r.run("hot") for r in runners), return_exceptions=True
            )

            committed = [o for o in outcomes if isinstance(o, ExecutionResult)]
            refused = [o for o in outcomes if isinstance(o, SessionConflict)]
            assert len(committed) + len(refused) == 64, [
                o for o in outcomes if isinstance(o, BaseException)
            ]
            assert committed
            stored = await storage.get("hot")
            assert stored is not None
            assert stored.context.get("counter") == len(committed)
            assert stored.version == 1 + len(committed)

    async def test_64_runners_that_retry_on_conflict_lose_no_update(
        self, storage: SessionStorage, new_storage: StorageFactory
    ) -> None:
        async with _runners(storage, new_storage, 64) as runners:
            await runners[0].create_session("hot")

            conflicts = await asyncio.gather(*(_step_until_committed(r, "hot") for r in runners))

            stored = await storage.get("hot")
            assert stored is not None
            assert stored.context.get("counter") == 64
            assert stored.version == 65
            assert sum(conflicts) > 0  # they did collide

    async def test_concurrent_creates_of_one_id_let_one_win_and_list_it_once(
        self, storage: SessionStorage, new_storage: StorageFactory
    ) -> None:
        async with _runners(storage, new_storage, 32) as runners:
            outcomes = await asyncio.gather(
                *(r.create_session("taken", context={"by": i}) for i, r in enumerate(runners)),
                return_exceptions=True,
            )

            winners = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException)]
            assert len(winners) == 1, outcomes
            refused = [o for o in outcomes if isinstance(o, BaseException)]
            assert all(isinstance(o, SessionConflict) for o in refused), refused
            stored = await storage.get("taken")
            assert stored is not None
            assert stored.context.get("by") == winners[0]
            with contextlib.suppress(NotImplementedError):  # listing is optional for a backend
                assert await storage.list_sessions() == ["taken"]

    @pytest.mark.parametrize("storages", [1, 8])
    async def test_concurrent_creates_of_many_sessions_all_land(
        self, storage: SessionStorage, new_storage: StorageFactory, storages: int
    ) -> None:
        async with _runners(storage, new_storage, 50, storages) as runners:
            await asyncio.gather(*(r.create_session(f"s{i}") for i, r in enumerate(runners)))

            for i in range(50):
                assert await storage.get(f"s{i}") is not None
