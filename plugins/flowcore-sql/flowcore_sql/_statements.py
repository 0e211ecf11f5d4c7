"""Every statement the storage runs, built once. Parameters are always bound, never spliced.

Parameter names (the keys of the dict each statement is executed with):

- ``session_id``, ``now`` (an aware datetime), ``expires_at`` (aware datetime or None);
- for a save: ``graph_id``, ``current_task_id``, ``status_message``, ``is_completed``,
  ``blob``, ``expected_version`` (what the session was loaded at) and ``new_version``;
- for cleanup: ``batch`` (how many rows at most);
- for a listing: ``after`` (list only the ids after it) and ``limit`` (how many ids at most).

A session whose ``expires_at`` has passed is treated everywhere as missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement

from flowcore_sql._schema import UtcDateTime, sessions

__all__ = [
    "CLEANUP",
    "STATEMENTS",
    "DELETE",
    "INSERT",
    "LISTINGS",
    "SELECT",
    "SELECT_EXPIRY",
    "SELECT_STORED",
    "SET_EXPIRY",
    "UPDATE",
]

_c = sessions.c
_now = sa.bindparam("now", type_=UtcDateTime)
_expires_at = sa.bindparam("expires_at", type_=UtcDateTime)
_this_session = _c.id == sa.bindparam("session_id", type_=sa.Text)
_live = sa.or_(_c.expires_at.is_(None), _c.expires_at > _now)
_expired = _c.expires_at <= _now  # false for NULL: a session without expiry never expires

SELECT = sa.select(_c.version, _c.blob).where(_this_session, _live)
"""``(version, blob)`` of a live session."""

SELECT_STORED = sa.select(_c.version, _c.expires_at).where(_this_session)
"""``(version, expires_at)`` of the row, live or expired: explains a refused save."""

_saved_fields: dict[str, Any] = {
    "graph_id": sa.bindparam("graph_id", type_=sa.Text),
    "current_task_id": sa.bindparam("current_task_id", type_=sa.Text),
    "status_message": sa.bindparam("status_message", type_=sa.Text),
    "is_completed": sa.bindparam("is_completed", type_=sa.Boolean),
    "version": sa.bindparam("new_version", type_=sa.BigInteger),
    "blob": sa.bindparam("blob", type_=sa.LargeBinary),
    "updated_at": _now,
}

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
        expires_at=sa.case((_c.own_expiry, _c.expires_at), else_=_expires_at),
    )
)
"""Compare-and-set: changes one row only if it is live and at ``expected_version``."""


def _insert(insert: Callable[[sa.Table], Any]) -> Any:
    statement = insert(sessions).values(
        id=sa.bindparam("session_id", type_=sa.Text),
        created_at=_now,
        expires_at=_expires_at,
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

SET_EXPIRY = (
    sessions.update()
    .where(_this_session, _live)
    .values(expires_at=_expires_at, own_expiry=sa.true())
)
"""Give a live session its own expiry (or none: ``expires_at`` None)."""

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


class DialectStatements:
    """The statements a storage runs after connecting, with this dialect's insert and listings."""

    def __init__(self, dialect: str) -> None:
        self.insert: sa.Insert = INSERT[dialect]
        self.listings = LISTINGS[dialect]
        self.all: tuple[ClauseElement, ...] = (
            SELECT,
            SELECT_STORED,
            UPDATE,
            self.insert,
            DELETE,
            SET_EXPIRY,
            SELECT_EXPIRY,
            CLEANUP,
            *self.listings.values(),
        )


STATEMENTS = {dialect: DialectStatements(dialect) for dialect in INSERT}
"""Per dialect name (``sqlite``, ``postgresql``)."""
