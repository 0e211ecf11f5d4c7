"""SessionStorage, the interface every backend implements, and InMemorySessionStorage."""

from __future__ import annotations

import abc
import threading
from types import TracebackType

from flowcore._codec import decode_session, encode_session
from flowcore._errors import SessionConflict
from flowcore._session import Session

__all__ = ["InMemorySessionStorage", "SessionStorage", "conflict_error"]


def conflict_error(session: Session, stored_version: int | None) -> SessionConflict:
    """The SessionConflict a backend raises when compare-and-set on ``version`` fails."""
    if session.version == 0:
        return SessionConflict(
            f"Session '{session.id}' already exists (stored version {stored_version}); "
            "load it with storage.get() to change it, or use another id"
        )
    if stored_version is None:
        return SessionConflict(
            f"Session '{session.id}' was deleted after it was loaded at version "
            f"{session.version}; nothing was saved"
        )
    return SessionConflict(
        f"Session '{session.id}' was saved by another writer: stored version is "
        f"{stored_version}, this copy was loaded at version {session.version}; nothing was "
        "saved. Load the session again and retry the step"
    )


class SessionStorage(abc.ABC):
    """Where sessions live between steps. Every method is async.

    Backends give copy semantics (a loaded session is independent of what is stored; nothing
    reaches storage but ``save``) and compare-and-set on ``version``: ``save`` succeeds only if
    the stored version equals ``session.version`` (0 = must not exist yet), then sets
    ``session.version`` to the new one; otherwise it raises SessionConflict and stores nothing.
    """

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

    async def __aenter__(self) -> SessionStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _check_session_id(session_id: object) -> str:
    if type(session_id) is not str:
        raise TypeError(
            f"session_id must be a str, got {type(session_id).__name__}: {session_id!r}"
        )
    return session_id


class InMemorySessionStorage(SessionStorage):
    """Sessions kept in this process, encoded exactly as a database backend would store them.

    Storing the encoded blob gives copy semantics and reports an unstorable context value at
    ``save``, as every other backend does. Safe to share between tasks and threads.
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, bytes]] = {}
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
                raise conflict_error(session, None if row is None else row[0])
            self._rows[session_id] = (expected + 1, blob)
        session.version = expected + 1

    async def delete(self, session_id: str) -> None:
        with self._lock:
            self._rows.pop(_check_session_id(session_id), None)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<InMemorySessionStorage: {len(self._rows)} sessions>"
