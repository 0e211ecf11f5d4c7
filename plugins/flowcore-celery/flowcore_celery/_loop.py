"""An event loop kept for the life of a process, in a thread of its own.

Celery calls a task as a plain function, from the pool's thread (prefork and solo: the process's
main thread; threads: one of several). flowcore and its storages are async, and a storage's
connections belong to the loop that opened them, so every step of a process runs on this one
loop: ``run(coro)`` hands a coroutine over and waits for its result, from any thread. A loop per
message would reconnect the storage on every step; one loop per pool thread would open a storage
per thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """One event loop in a daemon thread, started on first use in each process (a forked pool
    process starts its own: threads do not survive ``fork``)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result (or raise its exception)."""
        loop = self._running_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(f"{self._name}: run() called from its own loop would wait forever")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def is_running(self) -> bool:
        """True when this process started the loop (and it was not stopped since)."""
        return self._loop is not None and self._pid == os.getpid()

    def stop(self) -> None:
        """Stop the loop and wait for its thread (a no-op when it is not running here)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():
                return
            self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=self._name, daemon=True
                )
                self._thread.start()
            return self._loop
