"""SessionStorage, the interface every backend implements, and InMemorySessionStorage."""

from __future__ import annotations

import abc
import bisect
import threading
from datetime import datetime, timezone
from types import TracebackType

from flowcore._codec import decode_session, encode_session
from flowcore._errors import SessionConflict, quote_id
from flowcore._session import Session

__all__ = ["InMemorySessionStorage", "SessionStorage"]


class SessionStorage(abc.ABC):
    """Where sessions live between steps. Every method is async.

    Backends give copy semantics (a loaded session is independent of what is stored; nothing
    reaches storage but ``save``) and compare-and-set on ``version``: ``save`` succeeds only if
    the stored version equals ``session.version`` (0 = must not exist yet), then sets
    ``session.version`` to the new one; otherwise it raises SessionConflict and stores nothing.
    """

    persistent: bool = True
    """Whether the sessions it stores outlive this process (False for storage in memory)."""

    @abc.abstractmethod
    async def get(self, session_id: str) -> Session | None:
        """The stored session (an independent copy), or None."""

    @abc.abstractmethod
    async def save(self, session: Session) -> None:
        """Store ``session`` if its version is the stored one; then bump ``session.version``."""

    @abc.abstractmethod
    async def delete(self, session_id: str) -> None:
        """Remove the session, whatever its version (a missing id is fine)."""

    async def close(self) -> None:  # noqa: B027  (optional for a backend with nothing to close)
        """Release connections and files. The default does nothing."""

    async def list_sessions(
        self, *, limit: int | None = None, after: str | None = None
    ) -> list[str]:
        """The ids of the stored sessions, sorted by code point: at most ``limit`` of them,
        only those after ``after`` (for paging). Optional for a backend.

        The default raises NotImplementedError: the backend cannot list its sessions.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot list its sessions (it does not implement list_sessions)"
        )

    async def due_sessions(
        self, now: datetime | None = None, limit: int | None = None
    ) -> list[str]:
        """The ids of the sessions waiting for a time (``NextAction.WaitUntil``) whose
        ``wake_at`` is at or before ``now``: earliest ``wake_at`` first (ties by id), at most
        ``limit`` of them. ``now`` is an aware datetime, or None for the storage's own clock
        (the database server's, not this process's). Optional for a backend.

        The default raises NotImplementedError: the backend cannot tell which sessions are due.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot tell which sessions are due "
            "(it does not implement due_sessions)"
        )

    @staticmethod
    def check_due(now: object, limit: object) -> None:
        """Raise the error ``due_sessions`` gives for a bad ``now`` or ``limit``.

        For backend authors: call it first in ``due_sessions``, as ``check_listing`` in
        ``list_sessions``.
        """
        if now is not None:
            if not isinstance(now, datetime):
                raise TypeError(
                    f"now must be None or an aware datetime, got {type(now).__name__}: "
                    f"{quote_id(now)}"
                )
            if now.utcoffset() is None:
                raise ValueError(
                    f"now must be an aware datetime, got the naive {now!r}: give it a tzinfo, "
                    "e.g. datetime.now(timezone.utc)"
                )
        _check_limit(limit)

    @staticmethod
    def check_listing(limit: object, after: object) -> None:
        """Raise the error ``list_sessions`` gives for a bad ``limit`` or ``after``.

        For backend authors: call it first in ``list_sessions``, so that every backend refuses
        the same arguments the same way (ValueError for ``limit``, TypeError for ``after``).
        """
        _check_limit(limit)
        if after is not None and type(after) is not str:
            raise TypeError(
                f"after must be None or a str, got {type(after).__name__}: {quote_id(after)}"
            )

    async def __aenter__(self) -> SessionStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _check_limit(limit: object) -> None:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {quote_id(limit)}")


def _check_session_id(session_id: object) -> str:
    if type(session_id) is not str:
        raise TypeError(
            f"session_id must be a str, got {type(session_id).__name__}: {quote_id(session_id)}"
        )
    return session_id


class InMemorySessionStorage(SessionStorage):
    """Sessions kept in this process, encoded exactly as a database backend would store them.

    Storing the encoded blob gives copy semantics and reports an unstorable context value at
    ``save``, as every other backend does. Safe to share between tasks and threads.
    """

    persistent = False

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, bytes]] = {}
        self._waiting: dict[str, datetime] = {}  # the wake_at of each session that has one
        self._lock = threading.Lock()

    async def get(self, session_id: str) -> Session | None:
        row = self._rows.get(_check_session_id(session_id))
        if row is None:
            return None
        return decode_session(row[1], session_id=session_id, version=row[0])

    async def save(self, session: Session) -> None:
        session_id = _check_session_id(session.id)
        blob = encode_session(session)  # raises SerializationError before anything changes
        expected = session.version
        with self._lock:
            row = self._rows.get(session_id)
            if (0 if row is None else row[0]) != expected:  # a stored version is always >= 1
                raise SessionConflict.on_save(session.id, expected, None if row is None else row[0])
            self._rows[session_id] = (expected + 1, blob)
            if session.wake_at is None:
                self._waiting.pop(session_id, None)
            else:
                self._waiting[session_id] = session.wake_at
        session.version = expected + 1

    async def delete(self, session_id: str) -> None:
        with self._lock:
            self._rows.pop(_check_session_id(session_id), None)
            self._waiting.pop(session_id, None)

    async def due_sessions(
        self, now: datetime | None = None, limit: int | None = None
    ) -> list[str]:
        self.check_due(now, limit)
        if now is None:
            now = datetime.now(timezone.utc)
        with self._lock:
            due = sorted((at, sid) for sid, at in self._waiting.items() if at <= now)
        return [sid for _, sid in (due if limit is None else due[:limit])]

    async def list_sessions(
        self, *, limit: int | None = None, after: str | None = None
    ) -> list[str]:
        self.check_listing(limit, after)
        with self._lock:
            ids = sorted(self._rows)
        if after is not None:
            ids = ids[bisect.bisect_right(ids, after) :]
        return ids if limit is None else ids[:limit]

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<InMemorySessionStorage: {len(self._rows)} sessions>"
