"""Await something with a time limit, without wrapping it in a new asyncio.Task.

``asyncio.wait_for`` creates a Task per call (about 8 µs); a step awaits its task in the
caller's own Task and arms one timer that cancels it at the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["DeadlineExceeded", "await_with_timeout"]

_T = TypeVar("_T")


class DeadlineExceeded(Exception):
    """Internal: the awaited work did not finish in time (it was cancelled)."""


class _Deadline:
    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False

    def expire(self) -> None:
        self.fired = True
        self.task.cancel()


async def await_with_timeout(awaitable: Awaitable[_T], seconds: float) -> _T:
    """``await awaitable``, cancelling it after ``seconds`` and raising DeadlineExceeded."""
    current = asyncio.current_task()
    if current is None:  # not inside a Task (an unusual event loop driver): fall back
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise DeadlineExceeded from None
    deadline = _Deadline(current)
    handle = asyncio.get_running_loop().call_later(seconds, deadline.expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if not deadline.fired:
            raise
        uncancel = getattr(current, "uncancel", None)  # Python 3.11+
        if uncancel is not None and uncancel() > 0:
            raise  # cancelled from outside as well: that cancellation wins
        raise DeadlineExceeded from None
    finally:
        handle.cancel()
