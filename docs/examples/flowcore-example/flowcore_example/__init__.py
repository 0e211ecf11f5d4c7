"""An example flowcore plugin: what it provides. The hooks are in :mod:`flowcore_example.plugin`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flowcore import (
    ErrorDecision,
    ErrorHandler,
    NextAction,
    Session,
    SessionConflict,
    SessionStorage,
    StorageError,
    Task,
    TaskEnded,
    TaskFailure,
    Tracer,
)
from flowcore.codec import decode_session, encode_session

__all__ = ["FallbackHandler", "NamedMemoryStorage", "SlowTaskTracer", "open_named_memory"]

# -- a storage scheme -------------------------------------------------------------------------

_stores: dict[str, dict[str, tuple[int, bytes]]] = {}
_lock = threading.Lock()


class NamedMemoryStorage(SessionStorage):
    """Sessions kept in this process under a name: every instance with that name shares them.

    Stores each session as the blob ``flowcore.codec.encode_session`` returns, with its version
    beside it, like any backend: that gives copy semantics, and compare-and-set is one check
    under a lock.
    """

    def __init__(self, name: str) -> None:
        with _lock:
            self._rows = _stores.setdefault(name, {})
        self.name = name

    async def get(self, session_id: str) -> Session | None:
        row = self._rows.get(session_id)
        if row is None:
            return None
        return decode_session(row[1], session_id=session_id, version=row[0])

    async def save(self, session: Session) -> None:
        blob = encode_session(session)  # SerializationError here changes nothing
        expected = session.version
        with _lock:
            row = self._rows.get(session.id)
            stored = 0 if row is None else row[0]
            if stored != expected:
                raise SessionConflict(
                    f"Session '{session.id}' is at version {stored} in example://{self.name}, "
                    f"not {expected}; nothing was saved"
                )
            self._rows[session.id] = (expected + 1, blob)
        session.version = expected + 1

    async def delete(self, session_id: str) -> None:
        with _lock:
            self._rows.pop(session_id, None)


def open_named_memory(url: str, **options: Any) -> NamedMemoryStorage:
    """The storage factory for ``example://NAME``."""
    if options:
        raise StorageError(f"example:// takes no options, got {', '.join(sorted(options))}")
    name = url.split("://", 1)[1].strip("/")
    if not name:
        raise StorageError(f"'{url}' names no store: use example://NAME")
    return NamedMemoryStorage(name)


# -- a tracer ---------------------------------------------------------------------------------


class SlowTaskTracer(Tracer):
    """Logs a warning for every task that takes longer than ``threshold_ms``."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_ms = threshold_ms
        self.logger = logging.getLogger("flowcore_example")

    def task_ended(self, event: TaskEnded) -> None:
        if event.duration_ms > self.threshold_ms:
            self.logger.warning(
                "task %s of session %s took %.0f ms (more than %.0f ms)",
                event.task_id,
                event.session_id,
                event.duration_ms,
                self.threshold_ms,
            )


# -- an error handler -------------------------------------------------------------------------


class FallbackHandler(ErrorHandler):
    """A task with a ``fallback`` attribute (a task id) goes to that task when it fails."""

    def applies_to(self, task: Task) -> bool:
        # Asked once per task: the tasks without a fallback run as if no handler were installed.
        return getattr(task, "fallback", None) is not None

    def handle(self, failure: TaskFailure) -> ErrorDecision:
        fallback = failure.task.fallback  # type: ignore[attr-defined]
        return ErrorDecision.Route(NextAction.GoTo(fallback))
