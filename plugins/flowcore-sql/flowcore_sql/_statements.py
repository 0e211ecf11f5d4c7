"""Every statement the storage runs, built once. Parameters are always bound, never spliced.

Parameter names (the keys of the dict each statement is executed with):

- ``session_id``; ``expires_at`` (an aware datetime or None) for a session's own expiry at a
  given time, ``delay`` (seconds) for one a delay from now;
- for a save: ``graph_id``, ``current_task_id``, ``status_message``, ``is_completed``,
  ``wake_at`` (an aware datetime or None), ``blob``, ``expected_version`` (what the session was
  loaded at), ``new_version`` and ``ttl`` (seconds, or None for no expiry);
- for cleanup: ``batch`` (how many rows at most);
- for a listing: ``after`` (list only the ids after it) and ``limit`` (how many ids at most);
- for the due sessions: ``now`` (an aware datetime, when the caller gives the time) and
  ``limit``.

Time is the database's: "now" is computed by the database inside each statement (PostgreSQL's
``now()``; SQLite's ``'now'``, the clock of the machine that runs the statement), never by the
client, so a client whose clock is wrong cannot expire a live session or revive a dead one. A
session whose ``expires_at`` has passed is treated everywhere as missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from flowcore_sql._schema import ByCodePoint, UtcDateTime, sessions

__all__ = [
    "CLEANUP",
    "STATEMENTS",
    "DELETE",
    "DUE",
    "INSERT",
    "LISTINGS",
    "SELECT",
    "SELECT_EXPIRY",
    "SELECT_STORED",
    "SET_EXPIRY_AFTER",
    "SET_EXPIRY_AT",
    "UPDATE",
]

# SQLite keeps a timestamp as text, as SQLAlchemy writes it ("2025-04-01 09:30:00.123456", UTC
# here): the database's time is written the same way, so that texts compare as instants. SQLite's
# clock counts milliseconds.
_SQLITE_TIME = "strftime('%Y-%m-%d %H:%M:%f000', {})"


class _Now(FunctionElement[Any]):
    """The database's current time (the same throughout one statement)."""

    type = UtcDateTime()
    inherit_cache = True


class _FromNow(FunctionElement[Any]):
    """The database's current time plus a number of seconds (NULL when it is NULL)."""

    type = UtcDateTime()
    inherit_cache = True


@compiles(_Now, "postgresql")
def _now_postgresql(element: _Now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(_Now, "sqlite")
def _now_sqlite(element: _Now, compiler: SQLCompiler, **kw: Any) -> str:
    return _SQLITE_TIME.format("'now'")


@compiles(_FromNow, "postgresql")
def _from_now_postgresql(element: _FromNow, compiler: SQLCompiler, **kw: Any) -> str:
    return f"now() + make_interval(secs => {compiler.process(element.clauses, **kw)})"


@compiles(_FromNow, "sqlite")
def _from_now_sqlite(element: _FromNow, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return _SQLITE_TIME.format(f"julianday('now') + {seconds} / 86400.0")


_c = sessions.c
_now = _Now()
_this_session = _c.id == sa.bindparam("session_id", type_=sa.Text)
_live = sa.or_(_c.expires_at.is_(None), _c.expires_at > _now)
_expired = _c.expires_at <= _now  # false for NULL: a session without expiry never expires

SELECT = sa.select(_c.version, _c.blob).where(_this_session, _live)
"""``(version, blob)`` of a live session."""

SELECT_STORED = sa.select(_c.version, _c.expires_at, _expired).where(_this_session)
"""``(version, expires_at, expired)`` of the row, live or expired: explains a refused save."""

_saved_fields: dict[str, Any] = {
    "graph_id": sa.bindparam("graph_id", type_=sa.Text),
    "current_task_id": sa.bindparam("current_task_id", type_=sa.Text),
    "status_message": sa.bindparam("status_message", type_=sa.Text),
    "is_completed": sa.bindparam("is_completed", type_=sa.Boolean),
    "wake_at": sa.bindparam("wake_at", type_=UtcDateTime),
    "version": sa.bindparam("new_version", type_=sa.BigInteger),
    "blob": sa.bindparam("blob", type_=sa.LargeBinary),
    "updated_at": _now,
}
_renewed = _FromNow(sa.bindparam("ttl", type_=sa.Float))

UPDATE = (
    sessions.update()
    .where(
        _this_session,
        _c.version == sa.bindparam("expected_version", type_=sa.BigInteger),
        _live,
    )
    .values(
        **_saved_fields,
        # A session's own expiry (set_expiry) outlives saves; otherwise each save renews it.
        expires_at=sa.case((_c.own_expiry, _c.expires_at), else_=_renewed),
    )
)
"""Compare-and-set: changes one row only if it is live and at ``expected_version``."""


def _insert(insert: Callable[[sa.Table], Any]) -> Any:
    statement = insert(sessions).values(
        id=sa.bindparam("session_id", type_=sa.Text),
        created_at=_now,
        expires_at=_renewed,
        own_expiry=sa.false(),
        **_saved_fields,
    )
    excluded = statement.excluded
    # An expired row is a missing session: a new session may take its id.
    return statement.on_conflict_do_update(
        index_elements=[_c.id],
        set_={column.name: excluded[column.name] for column in sessions.c if column.name != "id"},
        where=_expired,
    )


INSERT: dict[str, Any] = {
    "sqlite": _insert(sqlite.insert),
    "postgresql": _insert(postgresql.insert),
}
"""Create-only, per dialect: inserts one row unless a live session has the id."""

DELETE = sessions.delete().where(_this_session)

SET_EXPIRY_AT = (
    sessions.update()
    .where(_this_session, _live)
    .values(expires_at=sa.bindparam("expires_at", type_=UtcDateTime), own_expiry=sa.true())
)
"""Give a live session its own expiry, at a time (or none: ``expires_at`` None)."""

SET_EXPIRY_AFTER = (
    sessions.update()
    .where(_this_session, _live)
    .values(expires_at=_FromNow(sa.bindparam("delay", type_=sa.Float)), own_expiry=sa.true())
)
"""Give a live session its own expiry, ``delay`` seconds from now."""

SELECT_EXPIRY = sa.select(_c.expires_at).where(_this_session, _live)

CLEANUP = sessions.delete().where(
    _c.id.in_(
        sa.select(_c.id)
        .where(_expired)
        .limit(sa.bindparam("batch", type_=sa.Integer))
        # PostgreSQL: skip rows a save holds locked; SQLite has one writer and ignores this.
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    ),
    _expired,  # checked again on the row as it is now, should a save have renewed it
)
"""Delete at most ``batch`` expired sessions."""


def _listings(dialect: str) -> dict[tuple[bool, bool], sa.Select[Any]]:
    # Ids sort by code point. PostgreSQL's COLLATE "C" compares the bytes, which in UTF-8 order
    # as code points, whatever the database's own collation; SQLite's default collation, BINARY,
    # does the same. Statements are compiled once: each combination of arguments has its own.
    key = _c.id.collate("C") if dialect == "postgresql" else _c.id
    listings = {}
    for after in (False, True):
        for limit in (False, True):
            statement = sa.select(_c.id).where(_live).order_by(key)
            if after:
                statement = statement.where(key > sa.bindparam("after", type_=sa.Text))
            if limit:
                statement = statement.limit(sa.bindparam("limit", type_=sa.BigInteger))
            listings[after, limit] = statement
    return listings


LISTINGS = {dialect: _listings(dialect) for dialect in INSERT}
"""The ids of the live sessions, sorted by code point, per dialect and then per
``(after given, limit given)``."""


def _due() -> dict[tuple[bool, bool], sa.Select[Any]]:
    # In the order of the partial index on (wake_at, id): the database reads the first due rows
    # of the index, in order, and stops at the limit. "wake_at IS NOT NULL" is implied by
    # "wake_at <= ...", and said too so that every planner sees that the partial index applies.
    statements = {}
    for now_given in (False, True):
        now = sa.bindparam("now", type_=UtcDateTime) if now_given else _now
        for limit in (False, True):
            statement = (
                sa.select(_c.id)
                .where(_c.wake_at.isnot(None), _c.wake_at <= now, _live)
                .order_by(_c.wake_at, ByCodePoint(_c.id))
            )
            if limit:
                statement = statement.limit(sa.bindparam("limit", type_=sa.BigInteger))
            statements[now_given, limit] = statement
    return statements


DUE = _due()
"""The ids of the live sessions whose ``wake_at`` has come, earliest first (ties by id, by code
point), per ``(now given, limit given)``: without ``now``, by the database's own time."""


class DialectStatements:
    """The statements a storage runs after connecting, with this dialect's insert, listings and
    due sessions."""

    def __init__(self, dialect: str) -> None:
        self.insert: sa.Insert = INSERT[dialect]
        self.listings = LISTINGS[dialect]
        self.due = DUE
        self.all: tuple[ClauseElement, ...] = (
            SELECT,
            SELECT_STORED,
            UPDATE,
            self.insert,
            DELETE,
            SET_EXPIRY_AT,
            SET_EXPIRY_AFTER,
            SELECT_EXPIRY,
            CLEANUP,
            *self.listings.values(),
            *self.due.values(),
        )


STATEMENTS = {dialect: DialectStatements(dialect) for dialect in INSERT}
"""Per dialect name (``sqlite``, ``postgresql``)."""
