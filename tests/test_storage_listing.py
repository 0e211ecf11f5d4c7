"""SessionStorage.list_sessions: optional for a backend, implemented by the in-memory one."""

from __future__ import annotations

import pytest

from flowcore import InMemorySessionStorage, Session, SessionStorage


@pytest.fixture
async def storage() -> InMemorySessionStorage:
    storage = InMemorySessionStorage()
    for session_id in ("claim-10", "claim-2", "Claim-1", "claim-1", "é"):
        await storage.save(Session.new_from_task(session_id, "intake"))
    return storage


async def test_lists_the_ids_sorted_by_code_point(storage):
    assert await storage.list_sessions() == ["Claim-1", "claim-1", "claim-10", "claim-2", "é"]


async def test_limit_and_after_page_through_the_ids(storage):
    first = await storage.list_sessions(limit=2)
    second = await storage.list_sessions(limit=2, after=first[-1])
    third = await storage.list_sessions(limit=2, after=second[-1])

    assert [first, second, third] == [["Claim-1", "claim-1"], ["claim-10", "claim-2"], ["é"]]
    assert await storage.list_sessions(after="é") == []
    assert await storage.list_sessions(after="claim-1x") == ["claim-2", "é"]  # need not exist
    assert await storage.list_sessions(limit=0) == []


async def test_deleted_sessions_are_not_listed(storage):
    await storage.delete("claim-2")

    assert "claim-2" not in await storage.list_sessions()


@pytest.mark.parametrize(
    ("options", "error"),
    [({"limit": -1}, ValueError), ({"limit": 1.5}, ValueError), ({"after": 3}, TypeError)],
)
async def test_bad_arguments_raise(storage, options, error):
    with pytest.raises(error):
        await storage.list_sessions(**options)


async def test_a_backend_that_does_not_implement_it_raises_not_implemented_error():
    class Minimal(SessionStorage):
        async def get(self, session_id):
            return None

        async def save(self, session):
            pass

        async def delete(self, session_id):
            pass

    with pytest.raises(NotImplementedError, match="Minimal cannot list its sessions"):
        await Minimal().list_sessions()
