"""Reading storage URLs: ``sqlite:///path`` and ``postgresql://...``, with any driver suffix.

A URL the plugin cannot serve fails here, in ``open_storage``, with a StorageError that says what
is wrong and what to write instead; every message shows the URL with its password hidden.
Options may be given in the query (``?ttl=3600``); ``_options`` reads them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import ArgumentError

from flowcore import StorageError, hide_password, quote_id

__all__ = ["EXAMPLES", "PostgresUrl", "backend_of", "postgres_url", "sqlite_url"]

EXAMPLES = "e.g. sqlite:///sessions.db or postgresql://user:password@localhost:5432/app"
_SQLITE_DRIVERS = ("", "pysqlite", "aiosqlite")  # all the same file through sqlite3
_SQLITE_MODES = {"ro": "true", "rwc": "false"}  # SQLite's own names: read only; read, write, create
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
_DRIVER_QUERY = {
    # What asyncpg takes from a URL's query, and the values it accepts (None: any text).
    "host": None,  # a Unix socket's directory, or several hosts
    "port": None,
    "ssl": _SSL_MODES,
    "sslmode": _SSL_MODES,  # libpq's name for what asyncpg calls ssl
    "target_session_attrs": _SESSION_ATTRS,
}


def _parse(url: str) -> sa.URL:
    if type(url) is not str:
        raise StorageError(f"A storage URL must be a str, got {type(url).__name__}")
    try:
        return sa.make_url(url)
    except (ArgumentError, ValueError) as exc:
        reason = str(exc)
    try:  # the standard library says more about a bad port or IPv6 address
        _ = urlsplit(url).port
    except ValueError as exc:
        reason = str(exc)
    if "[" in url or "]" in url:
        reason += "; write an IPv6 host in brackets, e.g. postgresql://user@[::1]:5432/app"
    raise StorageError(
        f"'{hide_password(url)}' is not a database URL ({reason}); expected {EXAMPLES}"
    )


def _split(parsed: sa.URL) -> tuple[str, str]:
    backend, _, driver = parsed.drivername.partition("+")
    return backend.lower(), driver.lower()


def backend_of(url: str) -> str:
    """The database a URL names, ``"sqlite"``, ``"postgresql"`` or another (without a driver),
    checked only as far as to read it."""
    backend, _ = _split(_parse(url))
    return backend


def sqlite_url(url: str) -> tuple[str, dict[str, str | tuple[str, ...]]]:
    """The file a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL names, and the
    options in its query (``mode=ro`` read as ``read_only=true``)."""
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
    if not parsed.database:
        raise StorageError(
            f"'{shown}' names no file: use sqlite:///path/to/file.db, or sqlite:///:memory: "
            "for a database that lasts as long as the storage"
        )
    query = dict(parsed.query)
    if "mode" in query:
        mode = query.pop("mode")
        if "read_only" in query:
            raise StorageError(f"'{shown}' gives both mode and read_only; give one of them")
        if not isinstance(mode, str) or mode not in _SQLITE_MODES:
            raise StorageError(
                f"'{shown}': mode={quote_id(mode)} is not a mode flowcore-sql opens SQLite "
                "in: use mode=ro (read only) or mode=rwc (read, write and create: the default)"
            )
        query["read_only"] = _SQLITE_MODES[mode]
    return parsed.database, query


class PostgresUrl:
    """A ``postgresql[+driver]://`` URL, checked: what the engine connects to (always
    asyncpg), the URL as messages show it (password hidden), and the options in its query.
    ``connection`` names what else the query may give, for messages."""

    connection = tuple(_DRIVER_QUERY)

    __slots__ = ("engine_url", "options", "shown")

    def __init__(
        self, engine_url: sa.URL, shown: str, options: dict[str, str | tuple[str, ...]]
    ) -> None:
        self.engine_url = engine_url
        self.shown = shown
        self.options = options


def postgres_url(url: str) -> PostgresUrl:
    """Check a ``postgresql[+driver]://`` URL: host, port, database and query."""
    parsed = _parse(url)
    shown = parsed.render_as_string(hide_password=True)  # until the options are taken out
    backend, _ = _split(parsed)
    if backend not in ("postgresql", "postgres"):
        raise StorageError(
            f"'{shown}' is not a PostgreSQL URL; expected "
            "postgresql://user:password@host:5432/database"
        )
    options: dict[str, str | tuple[str, ...]] = {}
    driver_query: dict[str, str | tuple[str, ...]] = {}
    for name, value in parsed.query.items():
        if name in _DRIVER_QUERY:
            driver_query[name] = _driver_value(shown, name, value)
        else:
            options[name] = value  # _options checks them, and says which names it knows
    if "sslmode" in driver_query and "ssl" in driver_query:
        raise StorageError(f"{shown} gives both ssl and sslmode; give one of them")
    # Shown without the options, which are not where the sessions are.
    shown = parsed.set(query=driver_query).render_as_string(hide_password=True)
    if "sslmode" in driver_query:
        driver_query["ssl"] = driver_query.pop("sslmode")
    engine_url = parsed.set(drivername="postgresql+asyncpg", query=driver_query)
    _check_address(engine_url, shown)
    return PostgresUrl(engine_url, shown, options)


def _driver_value(shown: str, name: str, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
    allowed = _DRIVER_QUERY[name]
    if allowed is None:
        return value
    if not isinstance(value, str) or value not in allowed:
        raise StorageError(
            f"{shown}: {name}={quote_id(value)} in the query is not one of {', '.join(allowed)}"
        )
    return value


def _check_address(engine_url: sa.URL, shown: str) -> None:
    """Refuse a URL that names no server or no database, or a port that cannot be."""
    try:
        dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        _, connect = dialect.create_connect_args(engine_url)  # type: ignore[no-untyped-call]
    except (ArgumentError, ValueError) as exc:
        raise StorageError(
            f"{shown} is not a PostgreSQL address flowcore-sql can use: {exc}"
        ) from None
    hosts = connect.get("host")
    database = connect.get("database")
    if not hosts or not database:
        missing = " and ".join(
            what for what, given in (("no host", hosts), ("no database", database)) if not given
        )
        raise StorageError(
            f"{shown} names {missing}: flowcore-sql would connect to whatever default server "
            "and database it finds and create its tables there. Name both the host and the "
            "database, e.g. postgresql://user:password@localhost:5432/app (for a Unix socket: "
            "postgresql://user@/app?host=/var/run/postgresql)"
        )
    ports = connect.get("port")
    for port in [*(ports if isinstance(ports, list) else [ports]), engine_url.port]:
        if port is not None and not 1 <= int(port) <= 65535:
            raise StorageError(
                f"{shown}: port {port} is out of range; a port is a number from 1 to 65535 "
                "(PostgreSQL's is usually 5432)"
            )
