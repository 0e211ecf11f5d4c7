"""list_sessions on SQL storage: live ids only, sorted by code point, paged by ``after``.

Every test runs on SQLite and on PostgreSQL, except the one about PostgreSQL's collations.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import Backend

from flowcore import InMemorySessionStorage, Session, StorageError

IDS = ["b", "a", "Z", "é", "ß", "claim-10", "claim-2", "claim-1", "\ufffd", "🎉", "x y", "日本"]


def new_session(session_id: str) -> Session:
    return Session.new_from_task(session_id, "count", graph_id="counter")


async def save_all(storage: SqlSessionStorage, ids: list[str]) -> None:
    for session_id in ids:
        await storage.save(new_session(session_id))


async def test_an_empty_storage_lists_nothing(storage: SqlSessionStorage) -> None:
    assert await storage.list_sessions() == []
    assert await storage.list_sessions(limit=5, after="a") == []


async def test_the_ids_are_sorted_by_code_point(storage: SqlSessionStorage) -> None:
    await save_all(storage, IDS)

    listed = await storage.list_sessions()

    assert listed == sorted(IDS)
    assert listed[:3] == ["Z", "a", "b"]  # upper case first, as code points go
    assert listed.index("ß") < listed.index("é") < listed.index("\ufffd") < listed.index("🎉")


async def test_limit_and_after_walk_through_every_id(storage: SqlSessionStorage) -> None:
    await save_all(storage, IDS)
    ids = sorted(IDS)

    for limit in range(1, len(ids) + 2):
        walked: list[str] = []
        page = await storage.list_sessions(limit=limit)
        while page:
            assert len(page) <= limit
            walked += page
            page = await storage.list_sessions(limit=limit, after=page[-1])
        assert walked == ids, f"limit={limit}"


async def test_after_need_not_be_a_stored_id(storage: SqlSessionStorage) -> None:
    await save_all(storage, IDS)
    ids = sorted(IDS)

    for after in ("", "A", "claim-1x", "c", "zzz", "\U0010ffff"):
        assert await storage.list_sessions(after=after) == [i for i in ids if i > after], after
    assert await storage.list_sessions(after="claim-1", limit=2) == ["claim-10", "claim-2"]


async def test_limit_zero_lists_nothing_and_a_huge_limit_lists_all(
    storage: SqlSessionStorage,
) -> None:
    await save_all(storage, IDS)

    assert await storage.list_sessions(limit=0) == []
    assert await storage.list_sessions(limit=2**63 - 1) == sorted(IDS)
    assert await storage.list_sessions(limit=2**80) == sorted(IDS)


async def test_expired_sessions_are_not_listed(storage: SqlSessionStorage) -> None:
    await save_all(storage, ["expired", "forever", "later", "reused"])
    await storage.set_expiry("expired", 0)
    await storage.set_expiry("reused", 0)
    await storage.set_expiry("later", timedelta(hours=1))
    await storage.save(new_session("reused"))  # a new session takes the expired one's id

    assert await storage.list_sessions() == ["forever", "later", "reused"]
    assert await storage.list_sessions(after="a", limit=1) == ["forever"]
    assert await storage.list_sessions(after="d", limit=1) == ["forever"]


async def test_sessions_past_their_ttl_are_not_listed(backend: Backend) -> None:
    storage = await backend.open(ttl=60)
    await save_all(storage, ["old", "new"])
    await backend.execute(
        "UPDATE flowcore_sessions SET expires_at = created_at WHERE id = "
        + ("?" if backend.name == "sqlite" else "$1"),
        "old",
    )

    assert await storage.list_sessions() == ["new"]


async def test_deleted_sessions_are_not_listed(storage: SqlSessionStorage) -> None:
    await save_all(storage, ["a", "b", "c"])

    await storage.delete("b")

    assert await storage.list_sessions() == ["a", "c"]


@pytest.mark.parametrize(
    "options",
    [
        {"limit": -1},
        {"limit": 1.5},
        {"limit": "10"},
        {"limit": True},
        {"after": 3},
        {"after": b"a"},
        {"limit": -1, "after": 3},
    ],
    ids=repr,
)
async def test_bad_arguments_raise_what_in_memory_storage_raises(
    backend: Backend, options: dict[str, Any]
) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        await InMemorySessionStorage().list_sessions(**options)
    storage = backend.storage()

    with pytest.raises(type(expected.value), match=f"^{re.escape(str(expected.value))}$"):
        await storage.list_sessions(**options)

    assert "(not connected)" in repr(storage)  # refused before connecting


async def test_a_database_failure_is_a_storage_error(backend: Backend) -> None:
    await backend.use_new_schema()  # PostgreSQL: a schema without the tables
    storage = await backend.open(migrate=False)

    with pytest.raises(StorageError, match=r"^Could not list the sessions in .*tables are missing"):
        await storage.list_sessions(limit=10, after="a")


async def test_postgres_sorts_by_code_point_whatever_the_column_collation(
    postgres_url: str, tmp_path: Path
) -> None:
    backend = Backend("postgresql", tmp_path, postgres_url)
    try:
        await backend.use_new_schema()
        collations = await backend.fetch(
            "SELECT collname FROM pg_collation WHERE collname = 'und-x-icu'"
        )
        if not collations:
            pytest.skip("this PostgreSQL has no ICU collation (und-x-icu) to sort ids by language")
        storage = await backend.open()
        # A language's order: "a" < "Z", "é" next to "e"; code points put "Z" first, "é" last.
        await backend.execute(
            'ALTER TABLE flowcore_sessions ALTER COLUMN id TYPE text COLLATE "und-x-icu"'
        )
        await save_all(storage, ["a", "Z", "e", "é", "f"])
        by_language = await backend.fetch("SELECT id FROM flowcore_sessions ORDER BY id")
        assert [row[0] for row in by_language] == ["a", "e", "é", "f", "Z"]

        assert await storage.list_sessions() == ["Z", "a", "e", "f", "é"]
        assert await storage.list_sessions(after="f") == ["é"]
        assert await storage.list_sessions(after="Z", limit=2) == ["a", "e"]
    finally:
        await backend.close()
