"""SqlSessionStorage: the contract, expiry and error reporting that SQLite and PostgreSQL share.

A backend subclass supplies the connection: how to open it, how to run one statement (returning
its first row, all its rows, or the number of rows it changed), how to migrate, and how to close.
Everything a user sees — compare-and-set, expiry, listing, due sessions, messages — lives here,
once.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from flowcore import (
    Session,
    SessionConflict,
    SessionNotFound,
    SessionStorage,
    StorageError,
    quote_id,
)
from flowcore.codec import decode_session, encode_session
from flowcore_sql._options import MAX_DELAY
from flowcore_sql._statements import (
    CLEANUP,
    DELETE,
    DUE,
    SELECT,
    SELECT_EXPIRY,
    SELECT_STORED,
    SET_EXPIRY_AFTER,
    SET_EXPIRY_AT,
    STATEMENTS,
    UPDATE,
)

__all__ = ["Expiry", "Row", "SqlSessionStorage", "describe_error", "root_error"]

_UTC = timezone.utc
_S = TypeVar("_S", bound="SqlSessionStorage")
_MAX_LIMIT = 2**63 - 1  # the largest LIMIT both databases take: a larger one lists them all

Expiry = datetime | timedelta | float | None
"""When a session expires: an aware datetime, a delay from now (timedelta or seconds), or None
for never."""


class Row(Protocol):
    """A row as a driver returns it: its columns by position."""

    def __getitem__(self, index: int, /) -> Any: ...


class SqlSessionStorage(SessionStorage):
    """Sessions in a SQL database, through SQLAlchemy Core: SQLite or PostgreSQL.

    Make one with ``flowcore.open_storage(url)``, :meth:`from_url`,
    :class:`~flowcore_sql.SqliteSessionStorage` or :class:`~flowcore_sql.PostgresSessionStorage`.
    It connects (and, unless ``migrate=False``, applies the migrations) on first use or in
    ``async with``. Use it from one event loop.

    Expiry is judged by the database's clock, in the statements themselves: never by the clock
    of the process that happens to run them.
    """

    _dialect: ClassVar[str]
    """The backend's SQLAlchemy dialect (``"sqlite"``, ``"postgresql"``): its statements."""

    _driver_errors: ClassVar[tuple[type[BaseException], ...]]
    """What a backend's driver raises, reported to the caller as StorageError."""

    _nul_in_text: ClassVar[bool] = True
    """Whether the database's text holds the NUL character (PostgreSQL's does not)."""

    def __init__(
        self, url: str, *, ttl: timedelta | None, migrate: bool, read_only: bool = False
    ) -> None:
        self._url = url
        self._ttl = ttl
        self._ttl_seconds = None if ttl is None else ttl.total_seconds()
        self._migrate_on_connect = migrate and not read_only
        self._read_only = read_only
        self._opened = False
        self._ready = False  # opened, and migrated when asked to
        self._closed = False
        self._start_lock = asyncio.Lock()
        statements = STATEMENTS[self._dialect]
        self._insert = statements.insert  # create-only, as the dialect writes it
        self._listings = statements.listings  # by (after given, limit given)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqlSessionStorage:
        """A backend for ``sqlite:///path`` or ``postgresql://...``: what ``open_storage``
        returns for these URLs (the plugin's ``open_sql``).

        ``options`` are the keyword arguments of the backend's class; the URL's query may give
        them too (``?ttl=3600``), but not both.
        """
        # Looked up when called: the plugin's entry module knows the backends, this base does not.
        from flowcore_sql.plugin import open_sql

        return open_sql(url, **options)

    @property
    def url(self) -> str:
        """Where the sessions are kept, with any password hidden."""
        return self._url

    @property
    def ttl(self) -> timedelta | None:
        """How long a session lives after its last save, unless it has its own expiry."""
        return self._ttl

    @property
    def read_only(self) -> bool:
        """True when the storage only reads: saves, deletes and expiry changes are refused."""
        return self._read_only

    # -- the SessionStorage contract ---------------------------------------------------------------

    async def get(self, session_id: str) -> Session | None:
        """The stored session (an independent copy), or None when it is missing or expired."""
        self._check_id(session_id)
        if not self._ready:
            await self._start()
        try:
            row = await self._first(SELECT, {"session_id": session_id})
        except self._driver_errors as exc:
            raise self._failure(f"load session {quote_id(session_id)} from", exc) from exc
        if row is None:
            return None
        return decode_session(bytes(row[1]), session_id=session_id, version=row[0])

    async def save(self, session: Session) -> None:
        """Store ``session`` if its version is the stored one; then bump ``session.version``.

        Version 0 creates the session (an expired one with the same id is replaced). A refused
        save raises SessionConflict and stores nothing. Unless the session has its own expiry
        (:meth:`set_expiry`), the save renews it to now + ``ttl``. The row's ``wake_at`` becomes
        the session's (NULL when it waits for no time), for :meth:`due_sessions`.
        """
        session_id = self._check_id(session.id)
        self._check_writable(f"save session {quote_id(session_id)}")
        blob = encode_session(session)  # SerializationError here changes nothing
        expected = session.version
        copies = (session.graph_id, session.current_task_id, session.status_message)
        if not self._nul_in_text:
            copies = tuple(_without_nul(text) for text in copies)  # type: ignore[assignment]
        params = {
            "session_id": session_id,
            "graph_id": copies[0],
            "current_task_id": copies[1],
            "status_message": copies[2],
            "is_completed": session.is_completed,
            "wake_at": None if session.wake_at is None else _utc(session.wake_at),
            "blob": blob,
            "expected_version": expected,
            "new_version": expected + 1,
            "ttl": self._ttl_seconds,
        }
        if not self._ready:
            await self._start()
        try:
            changed = await self._rowcount(self._insert if expected == 0 else UPDATE, params)
        except self._driver_errors as exc:
            raise self._failure(
                f"save session {quote_id(session_id)} to", exc, saving=True
            ) from exc
        if changed != 1:
            raise await self._refusal(session)
        session.version = expected + 1

    async def delete(self, session_id: str) -> None:
        """Remove the session, whatever its version (a missing id is fine)."""
        self._check_id(session_id)
        self._check_writable(f"delete session {quote_id(session_id)}")
        await self._change(DELETE, {"session_id": session_id}, "delete session {id} from")

    async def list_sessions(
        self, *, limit: int | None = None, after: str | None = None
    ) -> list[str]:
        """The ids of the live sessions, sorted by code point: at most ``limit`` of them (None:
        all), only those after ``after``. Expired sessions are not listed.

        To page through many sessions, pass the last id of a page as ``after`` for the next.
        """
        self.check_listing(limit, after)
        params: dict[str, Any] = {}
        if after is not None:
            self._check_text(after, "The listing bound after=")
            params["after"] = after
        if limit is not None:
            params["limit"] = min(limit, _MAX_LIMIT)
        statement = self._listings[after is not None, limit is not None]
        if not self._ready:
            await self._start()
        try:
            rows = await self._all(statement, params)
        except self._driver_errors as exc:
            raise self._failure("list the sessions in", exc) from exc
        return [row[0] for row in rows]

    async def due_sessions(
        self, now: datetime | None = None, limit: int | None = None
    ) -> list[str]:
        """The ids of the live sessions whose ``wake_at`` is at or before ``now``, earliest
        ``wake_at`` first (ties by id, by code point), at most ``limit`` of them (None: all).

        ``now`` is an aware datetime, or None for the database's clock (PostgreSQL's ``now()``;
        SQLite's ``'now'``, the clock of the machine running the process). Expired sessions
        are never due. The call reads a partial index on ``(wake_at, id)`` of the waiting
        sessions: with a limit, only its first due entries, however many sessions are stored.
        """
        self.check_due(now, limit)
        params: dict[str, Any] = {}
        if now is not None:
            params["now"] = _utc(now)
        if limit is not None:
            params["limit"] = min(limit, _MAX_LIMIT)
        statement = DUE[now is not None, limit is not None]
        if not self._ready:
            await self._start()
        try:
            rows = await self._all(statement, params)
        except self._driver_errors as exc:
            raise self._failure("find the due sessions in", exc) from exc
        return [row[0] for row in rows]

    async def close(self) -> None:
        """Close the connections (and, for SQLite, its thread). The storage cannot be reused."""
        if self._closed:
            return
        self._closed = True
        self._ready = False
        async with self._start_lock:  # let a connect under way finish first
            if self._opened:
                await self._close()

    async def __aenter__(self: _S) -> _S:
        """Connect (and migrate, unless ``migrate=False``) now rather than on first use."""
        if not self._ready:
            await self._start()
        return self

    # -- schema ------------------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply the migrations the database lacks, in one transaction; return their versions.

        Safe to call from several processes at once: each migration is applied once.
        Connecting applies them anyway unless the storage was made with ``migrate=False``.
        """
        self._check_writable("apply the migrations")
        await self._open_once()
        try:
            return await self._apply_migrations()
        except self._driver_errors as exc:
            raise self._failure("apply the migrations to", exc) from exc

    # -- expiry ------------------------------------------------------------------------------------

    async def set_expiry(self, session_id: str, expires: Expiry) -> None:
        """Give one session its own expiry, which later saves keep (instead of renewing ``ttl``).

        ``expires`` is an aware datetime, a delay from now by the database's clock (timedelta
        or seconds, at most 100 years; 0 or less: expired at once), or None for never. Raises
        SessionNotFound for a missing or expired session.
        """
        self._check_id(session_id)
        statement, params = _expiry_params(session_id, expires)
        self._check_writable(f"set the expiry of session {quote_id(session_id)}")
        if await self._change(statement, params, "set the expiry of session {id} in") == 0:
            raise SessionNotFound(session_id)

    async def get_expiry(self, session_id: str) -> datetime | None:
        """When the session expires (an aware datetime in UTC), or None if it never does.

        Raises SessionNotFound for a missing or expired session.
        """
        self._check_id(session_id)
        if not self._ready:
            await self._start()
        try:
            row = await self._first(SELECT_EXPIRY, {"session_id": session_id})
        except self._driver_errors as exc:
            raise self._failure(
                f"read the expiry of session {quote_id(session_id)} from", exc
            ) from exc
        if row is None:
            raise SessionNotFound(session_id)
        expires_at: datetime | None = row[0]
        return None if expires_at is None else expires_at.astimezone(_UTC)

    async def cleanup(self, *, batch: int = 1000) -> int:
        """Delete the expired sessions, ``batch`` rows per transaction; return how many.

        Each batch deletes what has expired by the database's clock when it runs. Saves go on
        meanwhile: each batch is short, and on PostgreSQL a row that a save holds is skipped (a
        later cleanup deletes it if it has still expired). Expired sessions already read as
        missing; this reclaims their space.
        """
        if type(batch) is not int or batch < 1:
            raise ValueError(f"batch must be a positive int, got {quote_id(batch)}")
        self._check_writable("delete expired sessions")
        deleted = 0
        while True:
            count = await self._change(CLEANUP, {"batch": batch}, "delete expired sessions from")
            deleted += count
            if count < batch:
                return deleted

    # -- what a backend supplies -------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect: make the engine and check that the database answers."""

    @abc.abstractmethod
    async def _apply_migrations(self) -> list[int]:
        """Apply the missing migrations under the backend's migration lock."""

    @abc.abstractmethod
    async def _first(self, statement: Executable, params: Mapping[str, Any]) -> Row | None:
        """Run ``statement``; its first row, or None."""

    @abc.abstractmethod
    async def _all(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        """Run ``statement``; all its rows."""

    @abc.abstractmethod
    async def _rowcount(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """Run ``statement`` in a transaction of its own; how many rows it changed."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release every connection (called once, after a successful ``_open``)."""

    def _hint(self, exc: BaseException) -> str | None:
        """What the user can do about ``exc``, if the backend knows."""
        return None

    def _outdated_schema(self) -> str:
        """The hint for a column the code uses that the database lacks: migrations not applied."""
        how = "run `await storage.migrate()`, or `flowcore db migrate URL`"
        if self._read_only:
            return (
                "The database's tables are older than this flowcore-sql, and a read-only storage "
                f"applies no migration: open it read-write once, or {how}"
            )
        return f"The database's tables are older than this flowcore-sql: {how}"

    def _save_outcome(self, exc: BaseException) -> str | None:
        """What became of a save that failed with ``exc``, if the backend knows: rolled back
        (nothing stored), or perhaps stored all the same (the connection broke)."""
        return None

    # -- helpers -----------------------------------------------------------------------------------

    async def _start(self) -> None:
        async with self._start_lock:
            if self._ready:
                return
            await self._open_once()
            if self._migrate_on_connect:
                try:
                    await self._apply_migrations()
                except self._driver_errors as exc:
                    raise self._failure("apply the migrations to", exc) from exc
            self._ready = True

    async def _open_once(self) -> None:
        if self._closed:
            raise StorageError(f"{type(self).__name__} for {self._url} is closed; open a new one")
        if self._opened:
            return
        try:
            await self._open()
        except self._driver_errors as exc:
            raise self._failure("connect to", exc) from exc
        self._opened = True

    async def _change(self, statement: Executable, params: Mapping[str, Any], action: str) -> int:
        if not self._ready:
            await self._start()
        try:
            return await self._rowcount(statement, params)
        except self._driver_errors as exc:
            what = action.format(id=quote_id(params.get("session_id")))
            raise self._failure(what, exc) from exc

    def _check_id(self, session_id: object) -> str:
        """``session_id``, if it is text this database can store; else TypeError (not a str)
        or StorageError saying why."""
        if type(session_id) is not str:
            raise TypeError(
                f"session_id must be a str, got {type(session_id).__name__}: {quote_id(session_id)}"
            )
        self._check_text(session_id, "Session id ")
        return session_id

    def _check_text(self, text: str, subject: str) -> None:
        """Raise StorageError, naming ``subject`` and ``text``, for text the database cannot
        hold: a lone surrogate anywhere, a NUL on PostgreSQL."""
        if text.isascii() and (self._nul_in_text or "\x00" not in text):
            return  # the usual case, at once
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            problem = (
                f"it holds a lone surrogate (U+{ord(text[exc.start]):04X} at position "
                f"{exc.start}), which is not Unicode text, so no database can store it. Use "
                "valid Unicode text"
            )
        else:
            if self._nul_in_text or "\x00" not in text:
                return
            problem = (
                "it holds the NUL character (U+0000), which PostgreSQL text cannot hold. Leave "
                "it out"
            )
        raise StorageError(f"{subject}{quote_id(text)} cannot be used with {self._url}: {problem}")

    def _check_writable(self, action: str) -> None:
        if self._read_only:
            raise StorageError(
                f"Could not {action}: {self._url} is opened read-only (mode=ro / "
                "read_only=True), so it only reads sessions. Open it without read-only mode "
                "to change them"
            )

    async def _refusal(self, session: Session) -> SessionConflict:
        """The SessionConflict for a save that changed no row, saying why."""
        try:
            row = await self._first(SELECT_STORED, {"session_id": session.id})
        except self._driver_errors:
            row = None  # the save was refused all the same; explain it as best we can
        if row is not None and row[2]:
            return SessionConflict(
                f"Session {quote_id(session.id)} expired at "
                f"{row[1].astimezone(_UTC):%Y-%m-%d %H:%M:%S} UTC, after it was loaded at "
                f"version {session.version}; nothing was saved"
            )
        return SessionConflict.on_save(
            session.id, session.version, None if row is None else int(row[0])
        )

    def _failure(self, action: str, exc: BaseException, *, saving: bool = False) -> StorageError:
        message = f"Could not {action} {self._url}: {describe_error(exc)}"
        for note in (self._hint(exc), self._save_outcome(exc) if saving else None):
            if note:
                message += f". {note}"
        return StorageError(message)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._opened else "not connected"
        return f"<{type(self).__name__} {self._url} ({state})>"


def root_error(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's wrappers (``exc`` itself if there are none)."""
    while isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    cause = exc.__cause__
    if cause is not None and type(exc).__module__.startswith("sqlalchemy"):
        exc = cause  # an error adapted to the DB-API: the driver's own says more
    return exc


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of the driver's own error, without SQLAlchemy's SQL and parameters."""
    root = root_error(exc)
    text = str(root).strip() or "no details"
    return f"{type(root).__name__}: {text}"


_EARLIEST = datetime.min.replace(tzinfo=_UTC)
_LATEST = datetime.max.replace(tzinfo=_UTC)


def _utc(when: datetime) -> datetime:
    """``when`` in UTC, as the columns keep times; an instant before the year 1 or after 9999
    in UTC, which Python cannot hold in UTC, as the earliest or latest instant it can."""
    try:
        return when.astimezone(_UTC)
    except OverflowError:
        return _EARLIEST if when.year == datetime.min.year else _LATEST


def _without_nul(text: str | None) -> str | None:
    """A copy column's text as PostgreSQL can hold it (the blob keeps the session as it is)."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


def _expiry_params(session_id: str, expires: Expiry) -> tuple[Executable, dict[str, Any]]:
    """The statement and parameters that give ``session_id`` the expiry ``expires``."""
    if isinstance(expires, datetime):
        if expires.tzinfo is None or expires.utcoffset() is None:
            raise ValueError(
                f"expires must be an aware datetime (e.g. datetime.now(timezone.utc) + ...), "
                f"got the naive {expires!r}"
            )
        return SET_EXPIRY_AT, {"session_id": session_id, "expires_at": expires.astimezone(_UTC)}
    if expires is None:
        return SET_EXPIRY_AT, {"session_id": session_id, "expires_at": None}
    if isinstance(expires, bool) or not isinstance(expires, (timedelta, int, float)):
        raise TypeError(
            "expires must be an aware datetime, a timedelta, a number of seconds or None, got "
            f"{type(expires).__name__}"
        )
    delay = expires.total_seconds() if isinstance(expires, timedelta) else float(expires)
    if not abs(delay) <= MAX_DELAY.total_seconds():  # NaN too
        raise ValueError(
            f"expires must be a delay of at most {MAX_DELAY.days // 365} years either way, got "
            f"{quote_id(expires)}"
        )
    return SET_EXPIRY_AFTER, {"session_id": session_id, "delay": delay}
