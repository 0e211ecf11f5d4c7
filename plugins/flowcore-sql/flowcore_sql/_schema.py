"""The tables flowcore-sql keeps, and the ordered migrations that build them.

Two tables, the same on SQLite and PostgreSQL:

- ``flowcore_sessions``: one row per session. The session itself is the ``blob``
  (``flowcore.codec.encode_session``), with ``version`` beside it for compare-and-set; the other
  columns repeat a few fields of the blob so that they can be queried, and keep the times.
- ``flowcore_migrations``: one row per migration applied, so that each is applied once.

A migration is frozen once released: it builds its tables from its own definitions, never from
the current :data:`sessions` table, so that a later migration finds exactly what the earlier ones
left. A test checks that migrating an empty database gives the tables defined here.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

__all__ = [
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "SESSIONS_TABLE",
    "Migration",
    "UtcDateTime",
    "metadata",
    "migrations",
    "sessions",
]

SESSIONS_TABLE = "flowcore_sessions"
MIGRATIONS_TABLE = "flowcore_migrations"

_UTC = timezone.utc


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp with time zone that always comes back as an aware datetime in UTC.

    SQLite has no timestamp type: SQLAlchemy stores the wall-clock time as text and drops the
    offset. Converting to UTC on the way in keeps the stored text ordered, so that ``<=`` on it
    compares instants.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"flowcore-sql stores aware datetimes only, got {value!r}")
        return value.astimezone(_UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)  # type: ignore[no-any-return]
        return value.astimezone(_UTC)  # type: ignore[no-any-return]


def _sessions_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        SESSIONS_TABLE,
        metadata,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("graph_id", sa.Text, nullable=False),
        sa.Column("current_task_id", sa.Text, nullable=False),
        sa.Column("status_message", sa.Text),
        sa.Column("is_completed", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        # NULL: never expires. own_expiry: set by set_expiry, so saves keep it.
        sa.Column("expires_at", UtcDateTime),
        sa.Column("own_expiry", sa.Boolean, nullable=False),
    )


def _expiry_index(table: sa.Table) -> sa.Index:
    # Partial: sessions that never expire (often most of them) stay out of the index.
    expires = table.c.expires_at.isnot(None)
    return sa.Index(
        f"{SESSIONS_TABLE}_expires_at",
        table.c.expires_at,
        postgresql_where=expires,
        sqlite_where=expires,
    )


def _migrations_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        MIGRATIONS_TABLE,
        metadata,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("applied_at", UtcDateTime, nullable=False),
    )


metadata = sa.MetaData()
sessions = _sessions_table(metadata)
"""The sessions table as the code reads and writes it (after every migration)."""
_expiry_index(sessions)
migrations = _migrations_table(metadata)
"""The migrations applied: version, description, applied_at."""


@dataclasses.dataclass(frozen=True)
class Migration:
    """One step of the schema: DDL statements run in one transaction, recorded as ``version``."""

    version: int
    description: str
    statements: tuple[ExecutableDDLElement, ...]

    def sql(self, dialect: Dialect) -> list[str]:
        """The statements as SQL text for ``dialect``, for a DBA who applies them by hand."""
        return [str(statement.compile(dialect=dialect)).strip() for statement in self.statements]


def _version_1() -> Migration:
    table = _sessions_table(sa.MetaData())  # frozen: this migration's own copy
    return Migration(
        1,
        "Create flowcore_sessions, one row per session, and an index on expires_at",
        (CreateTable(table), CreateIndex(_expiry_index(table))),
    )


MIGRATIONS: tuple[Migration, ...] = (_version_1(),)
"""Every migration, oldest first. Versions start at 1 and go up by one."""
