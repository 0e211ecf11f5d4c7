"""Applying :data:`flowcore_sql.MIGRATIONS` on a SQLAlchemy connection, in the caller's transaction.

The caller holds a lock that serialises migrations (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock, which a pooler in transaction mode keeps), so that two processes
starting at once apply each migration once. Every statement runs in that one transaction: if any
fails, nothing of it stays.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema, CreateTable

from flowcore_sql._schema import MIGRATIONS, MIGRATIONS_TABLE, migrations

__all__ = ["LATEST_VERSION", "apply_migrations", "schema_version"]

LATEST_VERSION = MIGRATIONS[-1].version
"""The schema version this flowcore-sql reads and writes."""


def schema_version(connection: Connection, schema: str | None) -> int:
    """The newest migration applied to the database, 0 for none (no version table yet)."""
    if not sa.inspect(connection).has_table(MIGRATIONS_TABLE, schema=schema):
        return 0
    latest = connection.scalar(sa.select(sa.func.max(migrations.c.version)))
    return int(latest or 0)


def apply_migrations(connection: Connection, schema: str | None) -> list[int]:
    """Apply the migrations the database lacks, oldest first; return their versions."""
    if schema is not None:
        connection.execute(CreateSchema(schema, if_not_exists=True))
    connection.execute(CreateTable(migrations, if_not_exists=True))
    done = set(connection.scalars(sa.select(migrations.c.version)))
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            connection.execute(statement)
        connection.execute(
            migrations.insert().values(
                version=migration.version,
                description=migration.description,
                applied_at=datetime.now(timezone.utc),
            )
        )
        applied.append(migration.version)
    return applied
