"""The options a SQL storage takes, as keyword arguments or in its URL's query.

Each option is defined once, here, as a ``flowcore.StorageOption``: its default, the values it
takes, and how it reads as text in a URL (``sqlite:///sessions.db?create_dirs=true``,
``postgresql://...?ttl=3600``). ``flowcore.resolve_storage_options`` reads them: a value an option
cannot take, a name it does not know or an option given twice is a StorageError that names the
URL (password hidden), the option and what it must be.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypedDict

from flowcore import StorageOption

__all__ = [
    "MAX_DELAY",
    "POSTGRES_OPTIONS",
    "SQLITE_OPTIONS",
    "SYNCHRONOUS",
    "PostgresOptions",
    "SqliteOptions",
]

MAX_DELAY = StorageOption.LONGEST_DELAY
"""The longest ttl or expiry delay, 100 years: the time it gives must stay within what SQLite's
date functions compute (up to the year 9999)."""

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_POSTGRES_NAME_BYTES = 63  # PostgreSQL cuts longer names, so two long schemas could collide


# -- checks of the options of their own ---------------------------------------------------------


def _synchronous(value: Any) -> str:
    if type(value) is not str or value.upper() not in SYNCHRONOUS:
        raise ValueError(f"one of {', '.join(SYNCHRONOUS)}")
    return value.upper()


def _schema(value: Any) -> str | None:
    what = f"None or a schema name: non-empty text of at most {_POSTGRES_NAME_BYTES} bytes in UTF-8"
    if value is None:
        return None
    if type(value) is not str or not value or "\x00" in value:
        raise ValueError(what)
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValueError(what) from None
    if size > _POSTGRES_NAME_BYTES:
        raise ValueError(what)
    return value


def _engine_options(value: Any) -> Mapping[str, Any] | None:
    what = (
        "None or a mapping of keyword arguments for SQLAlchemy's engine (its connect_args and "
        "execution_options mappings too)"
    )
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(value.get(name, {}), Mapping) for name in ("connect_args", "execution_options")
    ):
        raise ValueError(what)
    return value


# -- the options of each backend -------------------------------------------------------------------


class _CommonOptions(TypedDict, total=False):
    ttl: timedelta | float | None
    migrate: bool
    engine_options: Mapping[str, Any] | None


class SqliteOptions(_CommonOptions, total=False):
    """The keyword arguments of SqliteSessionStorage (for type checkers)."""

    busy_timeout: float
    synchronous: str
    create_dirs: bool
    read_only: bool


class PostgresOptions(_CommonOptions, total=False):
    """The keyword arguments of PostgresSessionStorage (for type checkers)."""

    schema: str | None
    pool_size: int
    max_overflow: int
    pool_timeout: float
    pool_recycle: float
    pool_pre_ping: bool
    connect_timeout: float
    command_timeout: float | None
    prepared_statements: bool


_COMMON = (
    StorageOption.delay("ttl", None),
    StorageOption.flag("migrate", True),
    StorageOption("engine_options", None, _engine_options),
)

SQLITE_OPTIONS: dict[str, StorageOption] = {
    option.name: option
    for option in (
        *_COMMON,
        StorageOption.seconds("busy_timeout", 5.0),
        StorageOption("synchronous", "NORMAL", _synchronous, str),
        StorageOption.flag("create_dirs", False),
        StorageOption.flag("read_only", False),
    )
}
"""SqliteSessionStorage's options, by name."""

POSTGRES_OPTIONS: dict[str, StorageOption] = {
    option.name: option
    for option in (
        *_COMMON,
        StorageOption("schema", None, _schema, str),
        StorageOption.count("pool_size", 5, minimum=1),
        StorageOption.count("max_overflow", 10, minimum=0),
        StorageOption.seconds("pool_timeout", 30.0),
        StorageOption.seconds("pool_recycle", -1, never=-1),
        StorageOption.flag("pool_pre_ping", False),
        StorageOption.seconds("connect_timeout", 10.0, inclusive=False),
        StorageOption.seconds("command_timeout", 30.0, inclusive=False, none=True),
        StorageOption.flag("prepared_statements", True),
    )
}
"""PostgresSessionStorage's options, by name."""
