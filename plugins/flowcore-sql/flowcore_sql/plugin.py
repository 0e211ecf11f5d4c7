"""flowcore-sql's plugin: the entry point ``sql`` in the group ``flowcore`` names this module.

It registers the URL schemes it serves, so that ``flowcore.open_storage("sqlite:///x.db")`` and
``open_storage("postgresql://...")`` (with or without a driver suffix) return its backends: the
URL picks the backend here, and the backend's class reads the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcore import StorageError, hide_password, hookimpl, resolve_storage_options
from flowcore_sql._options import SQLITE_OPTIONS
from flowcore_sql._postgres import PostgresSessionStorage
from flowcore_sql._sqlite import SqliteSessionStorage
from flowcore_sql._storage import SqlSessionStorage
from flowcore_sql._urls import EXAMPLES, backend_of, sqlite_url

__all__ = ["SCHEMES", "flowcore_register_storage", "open_sql"]

SCHEMES = ("sqlite", "postgresql", "postgres")
"""``postgres://`` is the short form many hosting services hand out."""


def open_sql(url: str, **options: Any) -> SqlSessionStorage:
    """The ``open_storage`` factory: SqliteSessionStorage or PostgresSessionStorage for ``url``.

    ``options`` are the keyword arguments of the backend's class; the URL's query may give them
    too (``?ttl=3600``), but not both.
    """
    backend = backend_of(url)
    if backend == "sqlite":
        path, query = sqlite_url(url)
        return SqliteSessionStorage(
            path, **resolve_storage_options(SQLITE_OPTIONS, options, query, hide_password(url))
        )
    if backend in ("postgresql", "postgres"):
        return PostgresSessionStorage(url, **options)
    raise StorageError(
        f"flowcore-sql stores sessions in SQLite or PostgreSQL, not '{backend}' (from "
        f"'{hide_password(url)}'); use {EXAMPLES}"
    )


@hookimpl
def flowcore_register_storage(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Serve sqlite:// and postgresql:// (and postgres://) URLs."""
    for scheme in SCHEMES:
        register(scheme, open_sql)
