"""``StepTraffic``: runners stepping sessions over and over while a test breaks their storage."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

from flowcore._errors import StorageError
from flowcore._runner import FlowRunner
from flowcore._storage import SessionStorage

__all__ = ["StepTraffic"]


class StepTraffic:
    """Each of ``session_ids`` stepped over and over by ``runners`` (in turn), as an async
    context manager: the stepping starts on entering and stops on leaving.

    A step that raises one of ``caught`` (``StorageError`` by default) is counted as failed,
    its error kept in ``errors``, and tried again 20 ms later; any other error ends the test.
    Made for ``counter_graph()``, whose every step adds one to the session's counter, so that
    ``check_sessions`` can tell what the fault did to the stored sessions.
    """

    def __init__(
        self,
        runners: Sequence[FlowRunner],
        session_ids: Sequence[str],
        *,
        caught: tuple[type[BaseException], ...] = (StorageError,),
    ) -> None:
        self.runners = list(runners)
        self.session_ids = list(session_ids)
        self.caught = caught
        self.succeeded: Counter[str] = Counter()
        """Steps reported done, by session id."""
        self.failed: Counter[str] = Counter()
        """Steps that raised one of ``caught``, by session id."""
        self.errors: list[BaseException] = []
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> StepTraffic:
        self._workers = [
            asyncio.create_task(self._keep_stepping(self.runners[i % len(self.runners)], s))
            for i, s in enumerate(self.session_ids)
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)

    async def _keep_stepping(self, runner: FlowRunner, session_id: str) -> None:
        while not self._stop.is_set():
            try:
                await runner.run(session_id)
                self.succeeded[session_id] += 1
            except self.caught as exc:
                self.failed[session_id] += 1
                self.errors.append(exc)
                await asyncio.sleep(0.02)

    async def check_sessions(self, runner: FlowRunner, storage: SessionStorage) -> None:
        """Once the fault is over: each session takes one more step through ``runner``, and
        ``storage`` holds it whole, with every step reported done and no other but failed ones.

        Nothing half-written means the counter and the version moved together; a failed step
        may or may not have been stored (a cut connection cannot tell).
        """
        for session_id in self.session_ids:
            await runner.run(session_id)
            stored = await storage.get(session_id)
            assert stored is not None, f"session {session_id!r} is gone"
            counter = stored.context.get("counter")
            assert stored.version == 1 + counter, (session_id, stored.version, counter)
            done = self.succeeded[session_id] + 1
            assert done <= counter <= done + self.failed[session_id], (
                session_id,
                counter,
                self.succeeded[session_id],
                self.failed[session_id],
            )
