"""The options a Redis storage takes, as keyword arguments or in its URL's query.

Each option is defined once, here, as a ``flowcore.StorageOption``: its default, the values it
takes, and how it reads as text in a URL (``redis://localhost:6379/0?prefix=app:&ttl=3600``).
``flowcore.resolve_storage_options`` reads them: a value an option cannot take, a name it does not
know or an option given twice is a StorageError that names the URL (password hidden), the option
and what it must be.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypedDict

from flowcore import StorageOption

__all__ = [
    "CLIENT_OPTIONS",
    "CLUSTER_OPTIONS",
    "OPTIONS",
    "RedisOptions",
]


# -- checks of the options of their own ------------------------------------------------------------


def _prefix(value: Any) -> str:
    what = "non-empty text (Unicode, no lone surrogates), e.g. 'flowcore:' or 'app:sessions:'"
    if type(value) is not str or not value:
        raise ValueError(what)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(what) from None
    return value


def _connection_options(value: Any) -> Mapping[str, Any] | None:
    what = "None or a mapping of keyword arguments for redis-py's ConnectionPool"
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(type(name) is str for name in value):
        raise ValueError(what)
    return value


# -- the options -----------------------------------------------------------------------------------


class RedisOptions(TypedDict, total=False):
    """The keyword arguments of RedisSessionStorage (for type checkers)."""

    prefix: str
    ttl: timedelta | float | None
    refresh_ttl: bool
    pool_size: int
    pool_timeout: float
    connect_timeout: float
    command_timeout: float | None
    connection_options: Mapping[str, Any] | None


_SHARED = (
    StorageOption("prefix", "flowcore:", _prefix, str),
    StorageOption.delay(
        "ttl",
        None,
        minimum=timedelta(milliseconds=1),
        inclusive=True,
        what=(
            "a timedelta or number of seconds of at least 1 ms (Redis counts expiry in "
            f"milliseconds) and at most {StorageOption.LONGEST_DELAY.days // 365} years, or None "
            "for never"
        ),
    ),
    StorageOption.flag("refresh_ttl", True),
    StorageOption.count("pool_size", 10, minimum=1),
    StorageOption.seconds("pool_timeout", 10.0),
    StorageOption.seconds("command_timeout", 10.0, inclusive=False, none=True),
)

OPTIONS: dict[str, StorageOption] = {
    option.name: option
    for option in (
        *_SHARED,
        StorageOption.seconds("connect_timeout", 5.0, inclusive=False),
        StorageOption("connection_options", None, _connection_options),
    )
}
"""The options of a storage opened from a URL, by name."""

CLIENT_OPTIONS: dict[str, StorageOption] = {option.name: option for option in _SHARED}
"""The options of a storage on an application's own client (which says how to connect)."""

CLUSTER_OPTIONS: dict[str, StorageOption] = {
    name: option
    for name, option in CLIENT_OPTIONS.items()
    if name in ("prefix", "ttl", "refresh_ttl")
}
"""The options of a storage on an application's cluster client (whose settings say how to
connect, wait and retry)."""
