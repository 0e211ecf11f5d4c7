"""Timing ``n`` operations, sync or async, the way each library is called."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def timed_sync(operation: Callable[[], Any]) -> Callable[[int], float]:
    """``run(n)`` for a library called with plain calls."""

    def run(n: int) -> float:
        clock = time.perf_counter
        started = clock()
        for _ in range(n):
            operation()
        return clock() - started

    return run


class Loop:
    """A private event loop for an async library: set up, time, and clean up on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def call(self, coroutine: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coroutine)  # type: ignore[arg-type]

    def timed(self, operation: Callable[[], Awaitable[Any]]) -> Callable[[int], float]:
        """``run(n)``: ``n`` awaited operations, timed inside the loop (not its start-up)."""

        async def many(n: int) -> float:
            clock = time.perf_counter
            started = clock()
            for _ in range(n):
                await operation()
            return clock() - started

        return lambda n: self.call(many(n))

    def close(self) -> None:
        self.loop.close()
