"""StorageOption and resolve_storage_options: a backend's options, as keywords or in its URL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flowcore import StorageError, StorageOption, resolve_storage_options

URL = "example://shop"


def _colour(value: Any) -> str:
    if value not in ("red", "blue"):
        raise ValueError("red or blue")
    return str(value)


OPTIONS = {
    option.name: option
    for option in (
        StorageOption.delay("ttl", None),
        StorageOption.flag("migrate", True),
        StorageOption.count("pool_size", 5, minimum=1),
        StorageOption.seconds("timeout", 10.0, inclusive=False, none=True),
        StorageOption.seconds("recycle", -1, never=-1),
        StorageOption("colour", "red", _colour, str),
        StorageOption("client", None, lambda value: value),
    )
}


def resolve(keywords: dict[str, Any] | None = None, **query: str | tuple[str, ...]) -> Any:
    return resolve_storage_options(OPTIONS, keywords or {}, query, URL, connection=("host",))


def test_a_value_comes_from_the_keywords_else_the_query_else_the_default() -> None:
    values = resolve({"pool_size": 2}, ttl="60", migrate="off", timeout="none", colour="blue")

    assert values == {
        "pool_size": 2,
        "ttl": timedelta(seconds=60),
        "migrate": False,
        "timeout": None,
        "colour": "blue",
        "recycle": -1,
        "client": None,
    }


@pytest.mark.parametrize(
    ("keywords", "query", "message"),
    [
        (
            {"colour": "green"},
            {},
            "The option colour='green' for example://shop is not red or blue",
        ),
        ({}, {"colour": "green"}, "example://shop: colour='green' in the query is not red or blue"),
        ({}, {"pool_size": "two"}, "pool_size='two' in the query is not a whole number"),
        ({"pool_size": True}, {}, "is not an int >= 1"),
        ({}, {"migrate": "maybe"}, "is not true or false (also 1/yes/on or 0/no/off)"),
        ({"migrate": 1}, {}, "is not True or False"),
        ({}, {"timeout": "0"}, "is not a number of seconds > 0 and at most 2147483"),
        ({"timeout": float("nan")}, {}, "or None for no limit"),
        (
            {"recycle": -2},
            {},
            "a number of seconds >= 0 and at most 2147483 (about 24 days), or -1",
        ),
        ({}, {"ttl": "1h"}, "ttl='1h' in the query is not a number"),
        ({"ttl": timedelta(0)}, {}, "is not a positive timedelta or number of seconds"),
        ({"ttl": 1e300}, {}, "at most 100 years"),
        ({}, {"client": "x"}, "Unknown option 'client' in the query of example://shop"),
        (
            {},
            {"size": "1"},
            "may give are: ttl, migrate, pool_size, timeout, recycle, colour, "
            "and for the connection: host",
        ),
        ({"size": 1}, {}, "Unknown option 'size' for example://shop; the options are: ttl, "),
        ({}, {"colour": ("red", "blue")}, "gives the option 'colour' 2 times; give it once"),
        ({"colour": "red"}, {"colour": "red"}, "given both in the query of example://shop and"),
    ],
)
def test_each_mistake_is_a_storage_error_naming_the_url_the_option_and_what_it_must_be(
    keywords: dict[str, Any], query: dict[str, Any], message: str
) -> None:
    with pytest.raises(StorageError) as caught:
        resolve(keywords, **query)

    assert message in str(caught.value)


def test_a_delay_may_start_at_a_minimum_and_say_so_in_the_backends_words() -> None:
    ttl = StorageOption.delay(
        "ttl", None, minimum=timedelta(milliseconds=1), inclusive=True, what="at least 1 ms"
    )

    assert ttl.check(0.001) == timedelta(milliseconds=1)
    with pytest.raises(ValueError, match=r"^at least 1 ms$"):
        ttl.check(0.0009)


def test_an_option_shows_its_name_and_default() -> None:
    assert repr(OPTIONS["pool_size"]) == "StorageOption('pool_size', default=5)"
    assert timedelta(days=36_525) == StorageOption.LONGEST_DELAY
