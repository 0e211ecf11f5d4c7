"""The storage conformance suite: the storage contract as tests (see ``flowcore.testing``)."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from flowcore._context import Context
from flowcore._errors import SerializationError, SessionConflict, StorageError
from flowcore._session import Session
from flowcore._storage import SessionStorage
from flowcore.codec import encode_session, register_type, unregister_type

from ._suite import StorageSuite

__all__ = ["CODEC_VALUES", "FREE_TEXT_IDS", "RawBlobWriter", "StorageConformance"]

RawBlobWriter = Callable[[str, int, bytes], "Awaitable[None] | None"]
"""``put_raw_blob(session_id, version, blob)``: store ``blob`` as is, bypassing ``save``."""

_IST = timezone(timedelta(hours=5, minutes=30))

CODEC_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -(2**63),
    2**64,
    -(2**100),
    1.5,
    -0.0,
    math.inf,
    "",
    "héllo ✓ 日本語",
    b"\x00\xff",
    [1, "a", None],
    (1, (2, "x"), [3]),
    {"a": 1, "b": [1, 2], "c": {"d": None}},
    {1: "int", 2.5: "float", None: "none", False: "bool", (1, "t"): "tuple"},
    {1, 2, "x"},
    frozenset({"a", (1, 2)}),
    datetime(2024, 2, 29, 23, 59, 59, 999999),
    datetime(2024, 1, 1, 12, 30, 15, 17, tzinfo=_IST),
    datetime(2024, 1, 1, 12, tzinfo=timezone.utc),
    date(2024, 2, 29),
    time(23, 59, 59, 999999),
    time(12, 30, tzinfo=_IST),
    timedelta(days=-3, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.141592653589793238462643383279502884197"),
    Decimal("-Infinity"),
]
"""One or more values of every type the codec stores itself (see ``flowcore.codec``)."""

FREE_TEXT_IDS: list[str] = [
    "élève ✓ 日本語 🎉",
    'O\'Brien said "hi"',
    "'; DROP TABLE sessions; --",
    "100% _match_ [a-z]* \\ ?",
    "line\nbreak\ttab",
    "  padded  ",
    "x" * 300,
]
"""Session ids a backend must store and find exactly: any str is a valid id."""

_LISTED_IDS = ["b", "a", "Z", "é", "ß", "\ufffd", "🎉", "claim-10", "claim-2", "claim-1", "a b"]
# By code point, U+FFFD comes before "🎉" (U+1F389), though not in UTF-16; "Z" before "a" and "ß"
# before "é", though not in most languages' collations.


class _Priority(enum.Enum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class _Parcel:
    weight: Decimal
    tags: frozenset[str]
    priority: _Priority


def _assert_same(expected: Any, actual: Any, where: str = "value") -> None:
    """``expected == actual``, with every part of exactly the same type."""
    assert type(actual) is type(expected), (
        f"{where}: {type(expected).__name__} came back as {type(actual).__name__}"
    )
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), where
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (x, y) in enumerate(zip(expected, actual, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert actual == expected, where
        for key, value in expected.items():
            _assert_same(value, actual[key], f"{where}[{key!r}]")
    else:
        assert actual == expected, where
        if isinstance(expected, float):
            assert math.copysign(1, actual) == math.copysign(1, expected), f"{where}: sign"
        if isinstance(expected, (datetime, time)):
            assert actual.utcoffset() == expected.utcoffset(), f"{where}: UTC offset"


def _new(session_id: str = "s1", **values: Any) -> Session:
    return Session.new_from_task(session_id, "start", graph_id="conformance", context=values)


async def _optional_or_skip(method: Callable[..., Awaitable[list[str]]], *args: Any) -> list[str]:
    """``method(*args)``, an optional method of a storage (``list_sessions``, ``due_sessions``);
    the test is skipped if the backend does not implement it."""
    try:
        return await method(*args)
    except NotImplementedError:
        owner = type(getattr(method, "__self__", None)).__name__
        pytest.skip(
            f"{owner} does not implement {method.__name__}, which is optional for a backend"
        )


def _waiting(session_id: str, wake_at: datetime) -> Session:
    session = _new(session_id)
    session.wake_at = wake_at
    return session


class StorageConformance(StorageSuite):
    """The storage contract as tests. Subclass it (as ``Test...``) and override ``storage``.

    Override ``put_raw_blob`` too if the backend can store raw bytes under an id; the tests of
    malformed blobs are skipped otherwise. The tests of ``list_sessions`` and
    ``due_sessions`` are skipped for a backend that does not implement them (they raise
    NotImplementedError).
    """

    @pytest.fixture
    def put_raw_blob(self, storage: SessionStorage) -> RawBlobWriter | None:
        """``put_raw_blob(session_id, version, blob)`` (plain or async) storing ``blob`` as is.

        Return None (the default) when the backend offers no way to plant raw bytes.
        """
        return None

    @pytest.fixture
    def registered_types(self) -> Iterator[None]:
        """An enum and a dataclass registered with the codec for one test."""
        register_type(_Priority, name="flowcore.testing.Priority")
        register_type(_Parcel, name="flowcore.testing.Parcel")
        yield
        unregister_type(_Parcel)
        unregister_type(_Priority)

    # -- get and save ------------------------------------------------------------------------

    async def test_a_missing_session_is_none(self, storage: SessionStorage) -> None:
        assert await storage.get("never-saved") is None

    async def test_the_first_save_stores_version_one(self, storage: SessionStorage) -> None:
        session = _new(amount=100)
        assert session.version == 0

        await storage.save(session)

        assert session.version == 1
        loaded = await storage.get("s1")
        assert loaded is not None
        assert loaded.id == "s1"
        assert loaded.version == 1
        assert loaded.context.get("amount") == 100

    async def test_each_save_bumps_the_version(self, storage: SessionStorage) -> None:
        session = _new()
        for expected in (1, 2, 3):
            await storage.save(session)
            assert session.version == expected
        loaded = await storage.get("s1")
        assert loaded is not None
        assert loaded.version == 3

    async def test_every_session_field_round_trips(self, storage: SessionStorage) -> None:
        ctx = Context({"amount": 100}, max_chat_messages=5)
        ctx.add_system_message("be brief")
        ctx.add_user_message("my bike was stolen")
        ctx.add_assistant_message("sorry to hear that")
        session = Session.new_from_task("s1", "review", graph_id="claims", context=ctx)
        session.status_message = "waiting for the adjuster"
        session.history = ["intake", "triage"]
        session.is_completed = True
        session.graph_version = 3
        await storage.save(session)

        loaded = await storage.get("s1")

        assert loaded is not None
        assert (loaded.id, loaded.graph_id, loaded.current_task_id) == ("s1", "claims", "review")
        assert loaded.graph_version == 3
        assert loaded.status_message == "waiting for the adjuster"
        assert loaded.history == ["intake", "triage"]
        assert loaded.is_completed is True
        assert loaded.context.max_chat_messages == 5
        assert loaded.context.get_chat_history() == ctx.get_chat_history()
        assert loaded.context.get("amount") == 100

    async def test_a_timer_and_recorded_requests_round_trip(self, storage: SessionStorage) -> None:
        session = _new()
        wake_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=_IST)
        session.wake_at = wake_at
        await storage.save(session)

        loaded = await storage.get("s1")

        assert loaded is not None
        assert loaded.wake_at == wake_at
        assert loaded.wake_at.utcoffset() is not None
        loaded.wake_at = None
        await storage.save(loaded)
        cleared = await storage.get("s1")
        assert cleared is not None
        assert cleared.wake_at is None

    # -- copy semantics ----------------------------------------------------------------------

    async def test_a_loaded_session_is_an_independent_copy(self, storage: SessionStorage) -> None:
        await storage.save(_new(items=[1]))

        first = await storage.get("s1")
        second = await storage.get("s1")
        assert first is not None
        assert second is not None
        assert first is not second
        first.context.get("items").append(2)
        first.context.set("new", True)
        first.current_task_id = "elsewhere"
        first.context.add_user_message("not saved")

        assert second.context.get("items") == [1]
        again = await storage.get("s1")
        assert again is not None
        assert again.context.get("items") == [1]
        assert "new" not in again.context
        assert again.current_task_id == "start"
        assert again.context.chat_history_len() == 0

    async def test_nothing_reaches_storage_but_save(self, storage: SessionStorage) -> None:
        session = _new(items=[1])
        await storage.save(session)

        session.context.get("items").append(2)  # the caller's object, after the save
        session.context.set("later", True)

        loaded = await storage.get("s1")
        assert loaded is not None
        assert loaded.context.get("items") == [1]
        assert "later" not in loaded.context

    # -- compare-and-set on version ------------------------------------------------------------

    async def test_a_stale_save_is_refused_and_stores_nothing(
        self, storage: SessionStorage
    ) -> None:
        await storage.save(_new())
        first = await storage.get("s1")
        second = await storage.get("s1")
        assert first is not None
        assert second is not None
        first.context.set("writer", "first")
        await storage.save(first)

        second.context.set("writer", "second")
        with pytest.raises(SessionConflict):
            await storage.save(second)

        assert second.version == 1  # left as it was
        stored = await storage.get("s1")
        assert stored is not None
        assert stored.version == 2
        assert stored.context.get("writer") == "first"

    async def test_version_zero_means_create_only(self, storage: SessionStorage) -> None:
        await storage.save(_new(owner="first"))

        late = _new(owner="second")
        with pytest.raises(SessionConflict):
            await storage.save(late)

        assert late.version == 0
        stored = await storage.get("s1")
        assert stored is not None
        assert stored.version == 1
        assert stored.context.get("owner") == "first"

    async def test_saving_a_deleted_session_is_a_conflict(self, storage: SessionStorage) -> None:
        await storage.save(_new())
        loaded = await storage.get("s1")
        assert loaded is not None
        await storage.delete("s1")

        with pytest.raises(SessionConflict):
            await storage.save(loaded)

        assert loaded.version == 1
        assert await storage.get("s1") is None

    async def test_a_version_ahead_of_the_stored_one_is_a_conflict(
        self, storage: SessionStorage
    ) -> None:
        await storage.save(_new())
        ahead = _new()
        ahead.version = 5

        with pytest.raises(SessionConflict):
            await storage.save(ahead)

        assert ahead.version == 5
        stored = await storage.get("s1")
        assert stored is not None
        assert stored.version == 1

    async def test_concurrent_saves_of_one_session_let_exactly_one_win(
        self, storage: SessionStorage
    ) -> None:
        await storage.save(_new())
        copies = [await storage.get("s1") for _ in range(8)]
        for i, copy in enumerate(copies):
            assert copy is not None
            copy.context.set("writer", i)

        await _exactly_one_wins(storage, [c for c in copies if c is not None], "writer", 2)

    async def test_concurrent_creates_of_one_id_let_exactly_one_win(
        self, storage: SessionStorage
    ) -> None:
        sessions = [_new(creator=i) for i in range(8)]

        await _exactly_one_wins(storage, sessions, "creator", 1)

    # -- delete ------------------------------------------------------------------------------

    async def test_delete_removes_the_session_whatever_its_version(
        self, storage: SessionStorage
    ) -> None:
        session = _new()
        await storage.save(session)
        await storage.save(session)

        await storage.delete("s1")

        assert await storage.get("s1") is None
        await storage.save(_new())  # the id is free again
        stored = await storage.get("s1")
        assert stored is not None
        assert stored.version == 1

    async def test_deleting_a_missing_session_is_fine(self, storage: SessionStorage) -> None:
        await storage.delete("never-saved")
        assert await storage.get("never-saved") is None

    # -- values ------------------------------------------------------------------------------

    @pytest.mark.parametrize("value", CODEC_VALUES, ids=repr)
    async def test_every_codec_type_round_trips(self, storage: SessionStorage, value: Any) -> None:
        await storage.save(_new(value=value, nested=[{"v": value}]))

        loaded = await storage.get("s1")

        assert loaded is not None
        _assert_same(value, loaded.context.get("value"))
        _assert_same([{"v": value}], loaded.context.get("nested"))

    async def test_registered_types_round_trip(
        self, storage: SessionStorage, registered_types: None
    ) -> None:
        parcel = _Parcel(Decimal("2.50"), frozenset({"fragile"}), _Priority.HIGH)
        await storage.save(_new(parcel=parcel, by_priority={_Priority.LOW: [parcel]}))

        loaded = await storage.get("s1")

        assert loaded is not None
        _assert_same(parcel, loaded.context.get("parcel"))
        assert loaded.context.get("by_priority") == {_Priority.LOW: [parcel]}

    async def test_an_unstorable_value_fails_at_save_and_changes_nothing(
        self, storage: SessionStorage
    ) -> None:
        session = _new(ok=1)
        await storage.save(session)
        session.context.set("lock", asyncio.Lock())

        with pytest.raises(SerializationError, match=r"context\['lock'\]"):
            await storage.save(session)

        assert session.version == 1
        stored = await storage.get("s1")
        assert stored is not None
        assert stored.version == 1
        assert "lock" not in stored.context

    # -- ids ---------------------------------------------------------------------------------

    @pytest.mark.parametrize("session_id", FREE_TEXT_IDS, ids=lambda i: repr(i)[:40])
    async def test_any_text_is_a_session_id(self, storage: SessionStorage, session_id: str) -> None:
        session = _new(session_id, marker=session_id)
        await storage.save(session)
        await storage.save(session)

        loaded = await storage.get(session_id)

        assert loaded is not None
        assert loaded.id == session_id
        assert loaded.version == 2
        assert loaded.context.get("marker") == session_id
        await storage.delete(session_id)
        assert await storage.get(session_id) is None

    async def test_ids_are_matched_exactly(self, storage: SessionStorage) -> None:
        # Ids that a case-insensitive, space-trimming or pattern-matching store would confuse.
        ids = ["Claim", "claim", "claim ", "cl%", "cl_im", "x" * 300, "x" * 301]
        for session_id in ids:
            await storage.save(_new(session_id, marker=session_id))

        for session_id in ids:
            loaded = await storage.get(session_id)
            assert loaded is not None, session_id
            assert loaded.context.get("marker") == session_id
        await storage.delete("cl%")
        assert await storage.get("claim") is not None
        assert await storage.get("cl_im") is not None

    # -- listing (optional for a backend) -------------------------------------------------------

    async def test_listing_gives_the_ids_sorted_by_code_point(
        self, storage: SessionStorage
    ) -> None:
        assert await _optional_or_skip(storage.list_sessions) == []
        for session_id in _LISTED_IDS:
            await storage.save(_new(session_id))

        assert await storage.list_sessions() == sorted(_LISTED_IDS)

    async def test_listing_pages_with_limit_and_after(self, storage: SessionStorage) -> None:
        await _optional_or_skip(storage.list_sessions)
        for session_id in _LISTED_IDS:
            await storage.save(_new(session_id))
        ids = sorted(_LISTED_IDS)

        for limit in (1, 2, 3, len(ids), len(ids) + 1):
            pages = [await storage.list_sessions(limit=limit)]
            while len(pages[-1]) == limit:
                pages.append(await storage.list_sessions(limit=limit, after=pages[-1][-1]))
            assert [i for page in pages for i in page] == ids, f"limit={limit}"
            assert all(len(page) <= limit for page in pages), f"limit={limit}"

        assert await storage.list_sessions(limit=0) == []
        assert await storage.list_sessions(after=ids[-1]) == []
        assert await storage.list_sessions(after="") == ids
        after_claim_1x = ["claim-2", "ß", "é", "\ufffd", "🎉"]
        assert await storage.list_sessions(after="claim-1x") == after_claim_1x  # need not exist

    async def test_deleted_sessions_are_not_listed(self, storage: SessionStorage) -> None:
        await _optional_or_skip(storage.list_sessions)
        for session_id in ("a", "b", "c"):
            await storage.save(_new(session_id))

        await storage.delete("b")

        assert await storage.list_sessions() == ["a", "c"]

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            pytest.param({"limit": -1}, ValueError, id="negative-limit"),
            pytest.param({"limit": 1.5}, ValueError, id="float-limit"),
            pytest.param({"limit": True}, ValueError, id="bool-limit"),
            pytest.param({"after": 3}, TypeError, id="int-after"),
            pytest.param({"after": b"a"}, TypeError, id="bytes-after"),
        ],
    )
    async def test_listing_refuses_bad_arguments(
        self, storage: SessionStorage, options: dict[str, Any], error: type[Exception]
    ) -> None:
        await _optional_or_skip(storage.list_sessions)
        with pytest.raises(error):
            await storage.list_sessions(**options)

    # -- due sessions (optional for a backend) -------------------------------------------------

    async def test_due_sessions_are_those_whose_time_has_come_earliest_first(
        self, storage: SessionStorage
    ) -> None:
        now = datetime(2030, 1, 1, tzinfo=timezone.utc)
        assert await _optional_or_skip(storage.due_sessions, now) == []
        for session_id, minutes in [("late", 5), ("b-first", -30), ("a-tie", -10), ("b-tie", -10)]:
            await storage.save(_waiting(session_id, now + timedelta(minutes=minutes)))
        await storage.save(_waiting("exactly-now", now))
        await storage.save(_new("not-waiting"))

        assert await storage.due_sessions(now) == ["b-first", "a-tie", "b-tie", "exactly-now"]
        assert await storage.due_sessions(now, 2) == ["b-first", "a-tie"]
        assert await storage.due_sessions(now, 0) == []
        later = now + timedelta(hours=1)
        assert await storage.due_sessions(later) == [
            "b-first",
            "a-tie",
            "b-tie",
            "exactly-now",
            "late",
        ]
        # an instant is an instant, whatever its offset
        assert await storage.due_sessions(now.astimezone(_IST), 1) == ["b-first"]

    async def test_a_session_stops_being_due_when_woken_or_deleted(
        self, storage: SessionStorage
    ) -> None:
        now = datetime(2030, 1, 1, tzinfo=timezone.utc)
        await _optional_or_skip(storage.due_sessions, now)
        for session_id in ("woken", "deleted", "still"):
            await storage.save(_waiting(session_id, now - timedelta(seconds=1)))

        woken = await storage.get("woken")
        assert woken is not None
        woken.wake_at = None
        await storage.save(woken)
        await storage.delete("deleted")
        moved = await storage.get("still")
        assert moved is not None
        moved.wake_at = now + timedelta(days=1)
        await storage.save(moved)

        assert await storage.due_sessions(now) == []

    async def test_due_sessions_go_by_the_storage_clock_when_no_time_is_given(
        self, storage: SessionStorage
    ) -> None:
        await _optional_or_skip(storage.due_sessions)
        real_now = datetime.now(timezone.utc)
        await storage.save(_waiting("past", real_now - timedelta(hours=1)))
        await storage.save(_waiting("future", real_now + timedelta(hours=1)))

        assert await storage.due_sessions() == ["past"]

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            pytest.param((datetime(2030, 1, 1),), ValueError, id="naive-now"),
            pytest.param(("2030-01-01",), TypeError, id="str-now"),
            pytest.param((None, -1), ValueError, id="negative-limit"),
            pytest.param((None, True), ValueError, id="bool-limit"),
        ],
    )
    async def test_due_sessions_refuses_bad_arguments(
        self, storage: SessionStorage, args: tuple[Any, ...], error: type[Exception]
    ) -> None:
        await _optional_or_skip(storage.due_sessions)
        with pytest.raises(error):
            await storage.due_sessions(*args)

    # -- unreadable blobs ----------------------------------------------------------------------

    @pytest.mark.parametrize(
        "damage",
        [
            pytest.param(lambda blob: b"", id="empty"),
            pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
            pytest.param(lambda blob: b"\x09" + blob[1:], id="unknown-format-version"),
            pytest.param(lambda blob: b"\x01\xc1\xff\x00garbage", id="garbage"),
        ],
    )
    async def test_an_unreadable_blob_raises_storage_error_naming_the_session(
        self,
        storage: SessionStorage,
        put_raw_blob: RawBlobWriter | None,
        damage: Callable[[bytes], bytes],
    ) -> None:
        if put_raw_blob is None:
            pytest.skip("the backend's tests give no put_raw_blob fixture to plant raw bytes")
        blob = encode_session(_new("bad 'id'", amount=100, notes=["a", "b"]))
        planted = put_raw_blob("bad 'id'", 1, damage(blob))
        if inspect.isawaitable(planted):
            await planted

        with pytest.raises(StorageError, match="bad 'id'"):
            await storage.get("bad 'id'")

        await storage.save(_new("good", amount=1))  # the backend still works
        assert await storage.get("good") is not None


async def _exactly_one_wins(
    storage: SessionStorage, sessions: Sequence[Session], marker: str, version: int
) -> None:
    """Save ``sessions`` (copies of session "s1", each with its index as context[marker]) at
    once: exactly one save succeeds, every other is a SessionConflict, and the stored session
    is the winner's, at ``version``."""
    outcomes = await asyncio.gather(*(storage.save(s) for s in sessions), return_exceptions=True)
    winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, SessionConflict) for o in outcomes if o is not None), outcomes
    stored = await storage.get("s1")
    assert stored is not None
    assert stored.version == version
    assert stored.context.get(marker) == winners[0]
