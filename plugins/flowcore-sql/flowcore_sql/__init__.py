"""flowcore-sql: flowcore sessions in SQLite (the embedded default) or PostgreSQL.

Installed, it serves ``flowcore.open_storage("sqlite:///sessions.db")`` and
``open_storage("postgresql://user:password@host/db")``; the classes below take the same options
as keyword arguments. Every backend stores one row per session on SQLAlchemy Core, with
compare-and-set on the session's version, optional expiry, and versioned migrations.
"""

from __future__ import annotations

import contextlib

from flowcore_sql._postgres import PostgresSessionStorage
from flowcore_sql._schema import MIGRATIONS, Migration
from flowcore_sql._sqlite import SqliteSessionStorage
from flowcore_sql._storage import Expiry, SqlSessionStorage

__version__ = "0.1.0"

__all__ = [
    "MIGRATIONS",
    "Expiry",
    "Migration",
    "PostgresSessionStorage",
    "SqlSessionStorage",
    "SqliteSessionStorage",
    "__version__",
]

# Report public names as flowcore_sql.X in reprs, tracebacks and docs.
for _name in ("Migration", "PostgresSessionStorage", "SqlSessionStorage", "SqliteSessionStorage"):
    with contextlib.suppress(AttributeError, TypeError):
        globals()[_name].__module__ = "flowcore_sql"
del _name
