"""The tables flowcore-sql keeps, and the ordered migrations that build them.

Two tables, the same on SQLite and PostgreSQL:

- ``flowcore_sessions``: one row per session. The session itself is the ``blob``
  (``flowcore.codec.encode_session``), with ``version`` beside it for compare-and-set; the other
  columns repeat a few fields of the blob so that they can be queried (``wake_at``, indexed, for
  ``due_sessions``), and keep the times.
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
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler, SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = [
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "SESSIONS_TABLE",
    "WAKE_AT_INDEX",
    "AddColumn",
    "ByCodePoint",
    "Migration",
    "UtcDateTime",
    "metadata",
    "migrations",
    "sessions",
]

SESSIONS_TABLE = "flowcore_sessions"
MIGRATIONS_TABLE = "flowcore_migrations"
WAKE_AT_INDEX = f"{SESSIONS_TABLE}_wake_at"

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


def _sessions_table_v1(metadata: sa.MetaData) -> sa.Table:
    """The sessions table as migration 1 creates it (frozen)."""
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


def _wake_at_column() -> sa.Column[datetime]:
    # NULL: the session waits for no time. Written by every save from session.wake_at.
    return sa.Column("wake_at", UtcDateTime)


class ByCodePoint(FunctionElement[str]):
    """A text column compared by code point, as ``list_sessions`` and ``due_sessions`` order
    ids: ``COLLATE "C"`` on PostgreSQL (whatever the database's collation); SQLite's default
    collation, BINARY, already does."""

    type = sa.Text()
    inherit_cache = True


@compiles(ByCodePoint, "postgresql")
def _by_code_point_postgresql(element: ByCodePoint, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


@compiles(ByCodePoint)
def _by_code_point(element: ByCodePoint, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def _wake_at_index(table: sa.Table) -> sa.Index:
    # Partial: only the sessions that wait for a time. In the order due_sessions reports them
    # (wake_at, then id), so that finding the first due ones reads a range of the index.
    waiting = table.c.wake_at.isnot(None)
    return sa.Index(
        WAKE_AT_INDEX,
        table.c.wake_at,
        ByCodePoint(table.c.id),
        postgresql_where=waiting,
        sqlite_where=waiting,
    )


class AddColumn(ExecutableDDLElement):
    """``ALTER TABLE ... ADD COLUMN ...`` for a column of a table (SQLAlchemy has no such DDL
    element: Alembic's would be a dependency for one statement)."""

    def __init__(self, column: sa.Column[Any]) -> None:
        self.column = column


@compiles(AddColumn)
def _add_column(element: AddColumn, compiler: DDLCompiler, **kw: Any) -> str:
    table = compiler.preparer.format_table(element.column.table)
    return f"ALTER TABLE {table} ADD COLUMN {compiler.get_column_specification(element.column)}"


def _migrations_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        MIGRATIONS_TABLE,
        metadata,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("applied_at", UtcDateTime, nullable=False),
    )


metadata = sa.MetaData()
sessions = _sessions_table_v1(metadata)
"""The sessions table as the code reads and writes it (after every migration)."""
sessions.append_column(_wake_at_column())
_expiry_index(sessions)
_wake_at_index(sessions)
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
    table = _sessions_table_v1(sa.MetaData())  # frozen: this migration's own copy
    return Migration(
        1,
        "Create flowcore_sessions, one row per session, and an index on expires_at",
        (CreateTable(table), CreateIndex(_expiry_index(table))),
    )


def _version_2() -> Migration:
    table = _sessions_table_v1(sa.MetaData())  # what migration 1 left
    wake_at = _wake_at_column()
    table.append_column(wake_at)
    return Migration(
        2,
        "Add wake_at to flowcore_sessions, and a partial index on (wake_at, id) for due_sessions",
        (AddColumn(wake_at), CreateIndex(_wake_at_index(table))),
    )


MIGRATIONS: tuple[Migration, ...] = (_version_1(), _version_2())
"""Every migration, oldest first. Versions start at 1 and go up by one."""
