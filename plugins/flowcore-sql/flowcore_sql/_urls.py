"""Reading storage URLs: ``sqlite:///path`` and ``postgresql://...``, with any driver suffix.

Every message about a URL shows it with the password hidden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from flowcore import StorageError, hide_password

if TYPE_CHECKING:
    from flowcore_sql._storage import SqlSessionStorage

__all__ = ["postgres_url", "sqlite_path", "storage_for_url"]

_EXAMPLES = "e.g. sqlite:///sessions.db or postgresql://user:password@localhost:5432/app"
_SQLITE_DRIVERS = ("", "pysqlite", "aiosqlite")  # all the same file through sqlite3


def _parse(url: str) -> sa.URL:
    if type(url) is not str:
        raise StorageError(f"A storage URL must be a str, got {type(url).__name__}")
    try:
        return sa.make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(
            f"'{hide_password(url)}' is not a database URL ({exc}); expected {_EXAMPLES}"
        ) from None


def _split(parsed: sa.URL) -> tuple[str, str]:
    backend, _, driver = parsed.drivername.partition("+")
    return backend.lower(), driver.lower()


def storage_for_url(url: str, **options: Any) -> SqlSessionStorage:
    """The backend for ``url``: SqliteSessionStorage or PostgresSessionStorage."""
    from flowcore_sql._postgres import PostgresSessionStorage
    from flowcore_sql._sqlite import SqliteSessionStorage

    backend, _ = _split(_parse(url))
    if backend == "sqlite":
        return SqliteSessionStorage(sqlite_path(url), **options)
    if backend in ("postgresql", "postgres"):
        return PostgresSessionStorage(url, **options)
    raise StorageError(
        f"flowcore-sql stores sessions in SQLite or PostgreSQL, not '{backend}' (from "
        f"'{hide_password(url)}'); use {_EXAMPLES}"
    )


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL names."""
    parsed = _parse(url)
    shown = hide_password(url)
    backend, driver = _split(parsed)
    if backend != "sqlite":
        raise StorageError(f"'{shown}' is not a SQLite URL; expected sqlite:///path/to/file.db")
    if driver not in _SQLITE_DRIVERS:
        raise StorageError(
            f"'{shown}': flowcore-sql opens SQLite files with Python's sqlite3 only, not "
            f"'{driver}'; use sqlite:///path/to/file.db"
        )
    if parsed.host or parsed.username or parsed.port:
        raise StorageError(
            f"'{shown}': a SQLite URL names a file, not a host: use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db (four slashes)"
        )
    if parsed.query:
        raise StorageError(
            f"'{shown}': a SQLite URL takes no query parameters; pass options to "
            "open_storage as keyword arguments (e.g. ttl=3600)"
        )
    if not parsed.database:
        raise StorageError(
            f"'{shown}' names no file: use sqlite:///path/to/file.db, or sqlite:///:memory: "
            "for a database that lasts as long as the storage"
        )
    return parsed.database


def postgres_url(url: str) -> tuple[sa.URL, str]:
    """The engine URL for a ``postgresql[+driver]://`` URL (always asyncpg), and the URL as
    shown in messages (password hidden)."""
    parsed = _parse(url)
    shown = parsed.render_as_string(hide_password=True)
    backend, _ = _split(parsed)
    if backend not in ("postgresql", "postgres"):
        raise StorageError(
            f"'{shown}' is not a PostgreSQL URL; expected "
            "postgresql://user:password@host:5432/database"
        )
    query = dict(parsed.query)
    if "sslmode" in query and "ssl" not in query:
        query["ssl"] = query.pop("sslmode")  # libpq's name for what asyncpg calls ssl
    return parsed.set(drivername="postgresql+asyncpg", query=query), shown
