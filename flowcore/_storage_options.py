"""StorageOption and resolve_storage_options: a storage backend's options, as keywords or in a URL.

A backend defines each of its options once: its name, its default, the values it takes and how a
URL's query writes it (``sqlite:///sessions.db?ttl=3600``). ``resolve_storage_options`` then
reads the keyword arguments and the query together; a value an option cannot take, a name it does
not know or an option given twice is a StorageError naming the URL, the option and what it must
be. The classmethods make the usual kinds of option: a flag, a count, seconds, a delay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from flowcore._errors import StorageError, quote_id

__all__ = ["StorageOption", "resolve_storage_options"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class StorageOption:
    """One option of a storage backend: its ``name``, its ``default``, ``check`` and ``parse``.

    ``check(value)`` returns the value as the backend uses it, or raises ValueError whose message
    says what the value must be (``"an int >= 1"``). ``parse(text)`` reads the value from a URL's
    query the same way; None means the option cannot be given in a URL.
    """

    __slots__ = ("check", "default", "name", "parse")

    LONGEST_WAIT = 2_147_483.0
    """The longest timeout :meth:`seconds` takes (about 24 days): databases and servers count
    timeouts in milliseconds, in 32 bits, and longer is a mistake, not a setting."""

    LONGEST_DELAY = timedelta(days=36_525)
    """The longest delay :meth:`delay` takes: 100 years."""

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
        self.parse = parse

    def __repr__(self) -> str:
        return f"StorageOption({self.name!r}, default={self.default!r})"

    @classmethod
    def flag(cls, name: str, default: bool) -> StorageOption:
        """True or False; in a URL ``true``/``false`` (also 1/0, yes/no, on/off)."""
        return cls(name, default, _flag, read_flag)

    @classmethod
    def count(cls, name: str, default: int, *, minimum: int) -> StorageOption:
        """An int of at least ``minimum``; in a URL a whole number."""

        def check(value: Any) -> int:
            if type(value) is not int or value < minimum:
                raise ValueError(f"an int >= {minimum}")
            return value

        return cls(name, default, check, _read_int)

    @classmethod
    def seconds(
        cls,
        name: str,
        default: float | None,
        *,
        minimum: float = 0.0,
        inclusive: bool = True,
        none: bool = False,
        never: float | None = None,
    ) -> StorageOption:
        """A number of seconds from ``minimum`` (or above it, unless ``inclusive``) to
        :attr:`LONGEST_WAIT`; ``none``: None too (in a URL ``none``), for no limit; ``never``:
        a value that means "never" (e.g. -1)."""
        low = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        what = f"a number of seconds {low} and at most {cls.LONGEST_WAIT:.0f} (about 24 days)"
        if never is not None:
            what += f", or {never:g} for never"
        if none:
            what += ", or None for no limit"

        def check(value: Any) -> float | None:
            if value is None and none:
                return None
            number = _number(value, what)
            if never is not None and number == never:
                return number
            above = number >= minimum if inclusive else number > minimum
            if not above or number > cls.LONGEST_WAIT:
                raise ValueError(what)
            return number

        return cls(name, default, check, _read_optional_number if none else _read_number)

    @classmethod
    def delay(
        cls,
        name: str,
        default: timedelta | float | None,
        *,
        minimum: timedelta = timedelta(0),
        inclusive: bool = False,
        what: str | None = None,
    ) -> StorageOption:
        """A timedelta or number of seconds from ``minimum`` (above it, unless ``inclusive``) to
        :attr:`LONGEST_DELAY`, or None for never (in a URL ``none``), as a timedelta: a ``ttl``,
        say. ``what`` says it in the backend's words, for messages."""
        if what is None:
            what = (
                f"a positive timedelta or number of seconds, at most "
                f"{cls.LONGEST_DELAY.days // 365} years, or None for never"
            )
        described: str = what

        def check(value: Any) -> timedelta | None:
            if value is None:
                return None
            if isinstance(value, timedelta):
                delay = value
            else:
                number = _number(value, described)
                if not abs(number) <= cls.LONGEST_DELAY.total_seconds():  # infinity too
                    raise ValueError(described)
                delay = timedelta(seconds=number)
            above = delay >= minimum if inclusive else delay > minimum
            if not above or delay > cls.LONGEST_DELAY:
                raise ValueError(described)
            return delay

        return cls(name, default, check, _read_optional_number)


def resolve_storage_options(
    options: Mapping[str, StorageOption],
    keywords: Mapping[str, Any],
    query: Mapping[str, str | tuple[str, ...]],
    url: str,
    *,
    connection: Sequence[str] = (),
) -> dict[str, Any]:
    """Every option's value: from ``keywords``, else from the URL's ``query``, else its default.

    ``options`` by name; ``query`` the URL's, a name given more than once as a tuple of its
    texts; ``url`` the URL as messages show it (see :func:`hide_password`); ``connection`` what
    else the query may give (the connection's own parameters, taken out of ``query`` already).
    Raises StorageError for an unknown name, an option given twice (in the query, or both there
    and as a keyword) and a value an option refuses.
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
        except ValueError as exc:
            raise StorageError(
                f"{url}: {name}={quote_id(text)} in the query is not {exc}"
            ) from None
    for name, value in keywords.items():
        try:
            values[name] = options[name].check(value)
        except ValueError as exc:
            raise StorageError(
                f"The option {name}={quote_id(value)} for {url} is not {exc}"
            ) from None
    for name, option in options.items():
        values.setdefault(name, option.default)
    return values


def read_flag(text: str) -> bool:
    """A flag as a URL's query writes it: ``true``/``false``, 1/0, yes/no, on/off."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"true or false (also {'/'.join(_TRUE[1:])} or {'/'.join(_FALSE[1:])})")


def _flag(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("True or False")
    return value


def _number(value: object, what: str) -> float:
    """``value`` as a float, if it is a number (not a bool, not NaN); else ValueError(what)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(what)
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError(what) from None
    if math.isnan(number):
        raise ValueError(what)
    return number


def _read_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("a number") from None


def _read_optional_number(text: str) -> float | None:
    return None if text.lower() == "none" else _read_number(text)


def _read_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("a whole number") from None
