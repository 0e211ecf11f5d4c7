"""Await something with a time limit, without wrapping it in a new asyncio.Task.

``asyncio.wait_for`` creates a Task per call (about 8 µs); a step awaits its task in the
caller's own Task and arms one timer that cancels it at the deadline. The timer is armed only
once the task suspends: an async task that finishes without waiting for anything cannot be
interrupted anyway (cancellation lands at an await), and pays for no timer at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar, cast

__all__ = ["DeadlineExceeded", "await_with_timeout"]

_T = TypeVar("_T")


class DeadlineExceeded(Exception):
    """Internal: the awaited work did not finish in ``seconds`` (it was cancelled)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"not done after {seconds:g}s")
        self.seconds = seconds


class _Deadline:
    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False

    def expire(self) -> None:
        self.fired = True
        self.task.cancel()


class _Rest:
    """The rest of a coroutine that was started by hand and suspended at ``first``.

    Awaiting it hands ``first`` (the future the coroutine waits for) to the running Task, and
    passes what the Task sends or throws back into the coroutine, exactly as awaiting the
    coroutine itself would have.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        value = self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def await_with_timeout(awaitable: Awaitable[_T], seconds: float) -> _T:
    """``await awaitable``, cancelling it after ``seconds`` and raising DeadlineExceeded."""
    limit = seconds
    current = asyncio.current_task()
    if current is None:  # not inside a Task (an unusual event loop driver): fall back
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(limit) from None
    loop = asyncio.get_running_loop()
    if hasattr(awaitable, "send") and hasattr(awaitable, "throw"):  # a coroutine: start it here
        coro = cast("Coroutine[Any, Any, _T]", awaitable)
        started = loop.time()
        try:
            first = coro.send(None)
        except StopIteration as stop:
            return cast("_T", stop.value)  # done without suspending: no timer was needed
        seconds -= loop.time() - started
        awaitable = _Rest(coro, first)
    deadline = _Deadline(current)
    handle = loop.call_later(max(seconds, 0.0), deadline.expire)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        if not deadline.fired:
            raise
        uncancel = getattr(current, "uncancel", None)  # Python 3.11+
        if uncancel is not None and uncancel() > 0:
            raise  # cancelled from outside as well: that cancellation wins
        raise DeadlineExceeded(limit) from None
    finally:
        handle.cancel()
    if deadline.fired:
        # The work swallowed the cancellation and finished: its result stands, and the Task's
        # cancellation count goes back to what it was (Python 3.11+).
        uncancel = getattr(current, "uncancel", None)
        if uncancel is not None:
            uncancel()
    return result
