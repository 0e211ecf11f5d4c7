"""InMemorySessionStorage and open_storage: copy semantics and compare-and-set on version."""

from __future__ import annotations

import pytest

from flowcore import (
    InMemorySessionStorage,
    Session,
    SessionConflict,
    SessionStorage,
    StorageError,
    hide_password,
    open_storage,
)


def new_session(session_id: str = "s1", **values) -> Session:
    return Session.new_from_task(session_id, "start", context=values)


async def test_first_save_gives_version_one_and_each_save_bumps_it():
    storage = InMemorySessionStorage()
    session = new_session()
    assert session.version == 0

    await storage.save(session)
    assert session.version == 1
    await storage.save(session)
    assert session.version == 2
    assert (await storage.get("s1")).version == 2


async def test_a_loaded_session_is_a_copy():
    storage = InMemorySessionStorage()
    session = new_session(items=[1])
    await storage.save(session)

    loaded = await storage.get("s1")
    loaded.context.get("items").append(2)
    loaded.context.set("new", True)
    loaded.current_task_id = "elsewhere"
    session.context.get("items").append(3)

    again = await storage.get("s1")
    assert again.context.get("items") == [1]
    assert "new" not in again.context
    assert again.current_task_id == "start"
    assert again is not loaded


async def test_a_stale_save_is_refused_and_stores_nothing():
    storage = InMemorySessionStorage()
    await storage.save(new_session())
    first = await storage.get("s1")
    second = await storage.get("s1")

    first.context.set("writer", "first")
    await storage.save(first)
    second.context.set("writer", "second")
    with pytest.raises(SessionConflict, match="stored version is 2") as caught:
        await storage.save(second)

    assert "loaded at version 1" in str(caught.value)
    assert second.version == 1  # left as it was
    stored = await storage.get("s1")
    assert stored.context.get("writer") == "first"
    assert stored.version == 2


async def test_version_zero_means_create_only():
    storage = InMemorySessionStorage()
    await storage.save(new_session(owner="a"))

    with pytest.raises(SessionConflict, match="already exists"):
        await storage.save(new_session(owner="b"))
    assert (await storage.get("s1")).context.get("owner") == "a"


async def test_saving_a_deleted_session_is_a_conflict():
    storage = InMemorySessionStorage()
    await storage.save(new_session())
    loaded = await storage.get("s1")
    await storage.delete("s1")

    with pytest.raises(SessionConflict, match="deleted"):
        await storage.save(loaded)
    assert await storage.get("s1") is None


async def test_delete_is_unconditional_and_a_missing_id_is_fine():
    storage = InMemorySessionStorage()
    await storage.save(new_session())
    await storage.delete("s1")
    await storage.delete("s1")
    await storage.delete("never-existed")
    assert await storage.get("s1") is None


@pytest.mark.parametrize(
    "session_id",
    ["", "ünïcødé ✓", 'it\'s "quoted"', "'; DROP TABLE sessions; --", "x" * 300, "a/b\\c\n"],
)
async def test_session_ids_are_free_text(session_id):
    storage = InMemorySessionStorage()
    await storage.save(new_session(session_id, v=1))
    loaded = await storage.get(session_id)
    assert loaded.id == session_id
    assert loaded.context.get("v") == 1


async def test_non_string_ids_are_refused():
    storage = InMemorySessionStorage()
    with pytest.raises(TypeError, match="session_id must be a str, got int"):
        await storage.get(42)  # type: ignore[arg-type]


async def test_storage_works_as_an_async_context_manager():
    async with open_storage("memory://") as storage:
        assert isinstance(storage, InMemorySessionStorage)
        await storage.save(new_session())
        assert (await storage.get("s1")) is not None


def test_unknown_scheme_lists_the_installed_ones():
    with pytest.raises(StorageError, match="memory") as caught:
        open_storage("nosuchdb://host/db")
    assert "nosuchdb" in str(caught.value)


@pytest.mark.parametrize("url", ["sessions.db", "", "memory"])
def test_a_string_that_is_not_a_url_is_refused(url):
    with pytest.raises(StorageError, match="not a storage URL"):
        open_storage(url)


def test_memory_takes_no_options():
    with pytest.raises(StorageError, match="memory:// takes no options, got pool_size"):
        open_storage("memory://", pool_size=3)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr%40t@db:5432/prod", "postgresql://app:***@db:5432/prod"),
        ("postgresql+asyncpg://app:pw@db/prod?ssl=1", "postgresql+asyncpg://app:***@db/prod?ssl=1"),
        ("postgresql://app@db/prod", "postgresql://app@db/prod"),
        ("sqlite:///sessions.db", "sqlite:///sessions.db"),
    ],
)
def test_hide_password_keeps_everything_but_the_password(url, shown):
    assert hide_password(url) == shown


def test_an_unknown_scheme_never_prints_the_password():
    with pytest.raises(StorageError) as caught:
        open_storage("nosuchdb://app:hunter2@host/db")
    assert "hunter2" not in str(caught.value)
    assert "nosuchdb://app:***@host/db" in str(caught.value)


def test_only_storage_in_memory_says_it_does_not_persist():
    assert InMemorySessionStorage().persistent is False
    assert open_storage("memory://").persistent is False

    class Database(SessionStorage):  # a backend says nothing: it persists
        async def get(self, session_id):
            return None

        async def save(self, session):
            pass

        async def delete(self, session_id):
            pass

    assert Database().persistent is True
