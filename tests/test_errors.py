"""Error messages quote ids and values briefly, however long or strange they are."""

from __future__ import annotations

import pytest

from flowcore import (
    FlowRunner,
    GraphBuilder,
    InMemorySessionStorage,
    SessionConflict,
    SessionNotFound,
    TaskResult,
    quote_id,
    task,
)


def test_quote_id_keeps_short_ids_as_they_are():
    assert quote_id("claim-1") == "'claim-1'"


def test_quote_id_cuts_a_long_id_and_gives_its_length():
    quoted = quote_id("x" * 1_000_000)
    assert len(quoted) < 200
    assert quoted.endswith("…' (1,000,000 characters)")


def test_quote_id_escapes_what_would_break_a_log_line():
    assert quote_id("a\nb\x00\ud800") == "'a\\nb\\x00\\ud800'"


def test_quote_id_of_other_values_is_a_short_repr():
    assert len(quote_id(b"x" * 1_000_000)) < 200
    assert quote_id(42) == "42"


@task("only")
def only(ctx):
    return TaskResult("done")


async def test_a_one_megabyte_session_id_gives_a_short_message():
    runner = FlowRunner(GraphBuilder("g").add_task(only).build(), InMemorySessionStorage())
    huge = "s" * 1_000_000
    with pytest.raises(SessionNotFound) as missing:
        await runner.run(huge)
    assert len(str(missing.value)) < 300
    assert missing.value.session_id == huge  # the attribute keeps the whole id
    await runner.create_session(huge)
    with pytest.raises(SessionConflict) as exists:
        await runner.create_session(huge)
    assert len(str(exists.value)) < 300
