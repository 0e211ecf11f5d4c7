"""The options a Redis storage takes, as keyword arguments or in its URL's query.

Each option is defined once, here: its default, the values it takes, and how it reads as text in
a URL (``redis://localhost:6379/0?prefix=app:&ttl=3600``). A value it cannot take, a name it does
not know or an option given twice is a StorageError that names the URL (password hidden), the
option and what it must be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypedDict

from flowcore import StorageError, quote_id

__all__ = [
    "CLIENT_OPTIONS",
    "CLUSTER_OPTIONS",
    "MAX_DELAY",
    "MAX_WAIT",
    "OPTIONS",
    "Option",
    "RedisOptions",
    "Refused",
    "resolve",
]

MAX_WAIT = 2_147_483.0
"""The longest timeout in seconds (about 24 days): longer is a mistake, not a setting."""

MAX_DELAY = timedelta(days=36_525)
"""The longest ttl, 100 years."""

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class Refused(ValueError):
    """A value an option cannot take; the message says what it must be."""


class Option:
    """One option: its name, its default, how a value is checked, how its URL text is read."""

    __slots__ = ("check", "default", "name", "parse")

    def __init__(
        self,
        name: str,
        default: Any,
        check: Callable[[Any], Any],
        parse: Callable[[str], Any] | None = None,
    ) -> None:
        self.name = name
        self.default = default
        self.check = check
        """Returns the value as the storage uses it, or raises Refused."""
        self.parse = parse
        """Reads the value from a URL's query (None: the option cannot be given there)."""


# -- checks ----------------------------------------------------------------------------------------


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(what)
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        raise Refused(what) from None
    if math.isnan(number):
        raise Refused(what)
    return number


def _seconds(*, minimum: float, inclusive: bool, none: bool = False) -> Callable[[Any], Any]:
    """A duration in seconds in ``[minimum, MAX_WAIT]`` (``(minimum, ...]`` unless
    ``inclusive``); ``none``: None is taken too."""
    low = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    what = f"a number of seconds {low} and at most {MAX_WAIT:.0f} (about 24 days)"
    if none:
        what += ", or None for no limit"

    def check(value: Any) -> float | None:
        if value is None and none:
            return None
        number = _number(value, what)
        if not (number >= minimum if inclusive else number > minimum) or number > MAX_WAIT:
            raise Refused(what)
        return number

    return check


def _ttl(value: Any) -> timedelta | None:
    what = (
        "a timedelta or number of seconds of at least 1 ms (Redis counts expiry in "
        f"milliseconds) and at most {MAX_DELAY.days // 365} years, or None for never"
    )
    if value is None:
        return None
    if isinstance(value, timedelta):
        ttl = value
    else:
        number = _number(value, what)
        if not abs(number) <= MAX_DELAY.total_seconds():  # infinity too
            raise Refused(what)
        ttl = timedelta(seconds=number)
    if not timedelta(milliseconds=1) <= ttl <= MAX_DELAY:
        raise Refused(what)
    return ttl


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise Refused("True or False")
    return value


def _count(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is not int or value < minimum:
            raise Refused(f"an int >= {minimum}")
        return value

    return check


def _prefix(value: Any) -> str:
    what = "non-empty text (Unicode, no lone surrogates), e.g. 'flowcore:' or 'app:sessions:'"
    if type(value) is not str or not value:
        raise Refused(what)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise Refused(what) from None
    return value


def _connection_options(value: Any) -> Mapping[str, Any] | None:
    what = "None or a mapping of keyword arguments for redis-py's ConnectionPool"
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(type(name) is str for name in value):
        raise Refused(what)
    return value


# -- reading URL text ------------------------------------------------------------------------------


def read_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off) as a URL's query writes a flag."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise Refused(f"true or false (also {'/'.join(_TRUE[1:])} or {'/'.join(_FALSE[1:])})")


def _read_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise Refused("a number") from None


def _read_optional_number(text: str) -> float | None:
    return None if text.lower() == "none" else _read_number(text)


def _read_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Refused("a whole number") from None


def _text(text: str) -> str:
    return text


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
    Option("prefix", "flowcore:", _prefix, _text),
    Option("ttl", None, _ttl, _read_optional_number),
    Option("refresh_ttl", True, _boolean, read_bool),
    Option("pool_size", 10, _count(1), _read_int),
    Option("pool_timeout", 10.0, _seconds(minimum=0, inclusive=True), _read_number),
    Option(
        "command_timeout",
        10.0,
        _seconds(minimum=0, inclusive=False, none=True),
        _read_optional_number,
    ),
)

OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        *_SHARED,
        Option("connect_timeout", 5.0, _seconds(minimum=0, inclusive=False), _read_number),
        Option("connection_options", None, _connection_options),
    )
}
"""The options of a storage opened from a URL, by name."""

CLIENT_OPTIONS: dict[str, Option] = {option.name: option for option in _SHARED}
"""The options of a storage on an application's own client (which says how to connect)."""

CLUSTER_OPTIONS: dict[str, Option] = {
    name: option
    for name, option in CLIENT_OPTIONS.items()
    if name in ("prefix", "ttl", "refresh_ttl")
}
"""The options of a storage on an application's cluster client (whose settings say how to
connect, wait and retry)."""


def resolve(
    options: Mapping[str, Option],
    keywords: Mapping[str, Any],
    query: Mapping[str, str | tuple[str, ...]],
    url: str,
    connection: Sequence[str] = (),
) -> dict[str, Any]:
    """Every option's value: from ``keywords``, else from the URL's ``query``, else its default.

    ``url`` is the URL as messages show it; ``connection``, what else its query may give (the
    connection's own parameters, taken out of ``query`` already). Raises StorageError for an
    unknown name, an option given twice (in the query, or both there and as a keyword) and a
    value an option refuses.
    """
    for name in keywords:
        if name not in options:
            known = ", ".join(options)
            raise StorageError(
                f"Unknown option {quote_id(name)} for {url}; the options are: {known}"
            )
    values: dict[str, Any] = {}
    for name, text in query.items():
        option = options.get(name)
        if option is None or option.parse is None:
            known = ", ".join(o.name for o in options.values() if o.parse)
            if connection:
                known += f", and for the connection: {', '.join(connection)}"
            raise StorageError(
                f"Unknown option {quote_id(name)} in the query of {url}; the options a URL may "
                f"give are: {known}"
            )
        if not isinstance(text, str):
            raise StorageError(f"{url} gives the option {name!r} {len(text)} times; give it once")
        if name in keywords:
            raise StorageError(
                f"The option {name!r} is given both in the query of {url} and as a keyword "
                "argument; give it once"
            )
        try:
            values[name] = option.check(option.parse(text))
        except Refused as exc:
            raise StorageError(
                f"{url}: {name}={quote_id(text)} in the query is not {exc}"
            ) from None
    for name, value in keywords.items():
        try:
            values[name] = options[name].check(value)
        except Refused as exc:
            raise StorageError(
                f"The option {name}={quote_id(value)} for {url} is not {exc}"
            ) from None
    for name, option in options.items():
        values.setdefault(name, option.default)
    return values
