"""Streaming a step: the events ``FlowRunner.stream`` yields, and ``flowcore.emit``.

``FlowRunner.stream`` runs the step in a task of its own, with a :class:`StreamSink` in a
context variable; the engine tells the sink when each task starts and ends, and ``emit`` finds
it there. Outside a stream the variable holds None, and ``emit`` returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from contextvars import ContextVar
from typing import Any, Literal, NamedTuple

from flowcore._values import TaskRecord

__all__ = ["STREAMING", "StepEvent", "StreamSink", "emit", "stream_sink"]

EventKind = Literal["task_started", "output", "task_ended"]


class StepEvent(NamedTuple):
    """One event of a streamed step: ``kind``, ``task_id`` and ``value``.

    - ``"task_started"``: the task ``task_id`` starts (``value`` None);
    - ``"output"``: the task emitted ``value`` with :func:`flowcore.emit`;
    - ``"task_ended"``: the task ended; ``value`` is its :class:`flowcore.TaskRecord`.

    A named tuple: immutable, compares by value, works with ``match``.
    """

    kind: EventKind
    task_id: str
    value: Any = None


END_OF_STEP: Any = object()
"""Put on the queue when the step's task is done: the stream then yields its result."""


class StreamSink:
    """Where one streamed step's events go: a queue the stream reads, fed from the step's task
    (and from worker threads, for a plain ``def`` task with its own timeout).

    A deque and one future to wake the reader, rather than an ``asyncio.Queue``: a streamed
    step puts several events per task, and the queue's bookkeeping cost more than the events.
    """

    __slots__ = ("_loop", "_thread", "claimed", "closed", "items", "task_id", "waiter")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.items: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None  # set while the reader waits
        self.task_id = ""
        self.closed = False
        self.claimed = False  # by the run of the step; a run inside one of its tasks ignores it

    def _append(self, item: object) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _put(self, item: object) -> None:
        if self.closed:
            return  # the step is over: a thread that outlived its timeout is not heard
        if threading.get_ident() == self._thread:
            self._append(item)
        else:
            # RuntimeError: the loop is closed, nobody is listening any more
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._append, item)

    async def next_items(self) -> deque[Any]:
        """The events put so far (waiting until there is one); the caller empties the deque."""
        items = self.items
        if not items:
            waiter = self._loop.create_future()
            self.waiter = waiter
            await waiter
        return items

    def task_started(self, task_id: str) -> None:
        self.task_id = task_id
        self._put(StepEvent("task_started", task_id))

    def task_ended(self, record: TaskRecord) -> None:
        self._put(StepEvent("task_ended", record._task_id, record))

    def output(self, value: object) -> None:
        self._put(StepEvent("output", self.task_id, value))

    def finish(self, _step: object = None) -> None:
        """The step's task is done (a done callback): end the stream after what is queued."""
        self._append(END_OF_STEP)
        self.closed = True


stream_sink: ContextVar[StreamSink | None] = ContextVar("flowcore_stream_sink", default=None)

STREAMING: set[StreamSink] = set()
"""The sinks of the streams running now, in any thread: while it is empty, a step need not look
up ``stream_sink`` (set.add and set.discard are atomic, so no lock is needed)."""


def emit(value: Any) -> None:
    """Send ``value`` (e.g. an LLM token) to the stream of the step this task runs in.

    ``FlowRunner.stream`` yields it as a ``StepEvent("output", task_id, value)`` while the task
    runs; ``FlowRunner.run`` ignores it: outside a stream, ``emit`` does nothing and costs next
    to nothing. The value is news, not state: it is delivered as it is (never copied, encoded
    or stored), so any object may be emitted, and it is not saved with the session. Works from
    async and plain ``def`` tasks, a worker thread included.
    """
    if STREAMING:
        sink = stream_sink.get()
        if sink is not None:
            sink.output(value)
