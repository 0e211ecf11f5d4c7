"""RedisSessionStorage beyond the conformance suite: expiry, the indexes, keys that are not
flowcore's, an application's own client, and what each failure says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis
import redis.asyncio
from flowcore_redis import RedisSessionStorage
from redis_servers import PrivateRedis

from flowcore import (
    FlowRunner,
    Session,
    SessionConflict,
    SessionNotFound,
    StorageError,
    open_storage,
)
from flowcore.testing import counter_graph

GRAPH = counter_graph()


def new(session_id: str, **values: object) -> Session:
    return Session.new_from_task(session_id, "increment", context=values)


# -- expiry ----------------------------------------------------------------------------------------


async def test_a_session_expires_ttl_after_its_last_save(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with RedisSessionStorage(redis_url, prefix=prefix, ttl=0.4) as storage:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("idle")
        await runner.create_session("busy")
        loaded = await storage.get("idle")
        assert 0 < raw.pttl(storage.key_of("idle")) <= 400
        for _ in range(5):  # each step sets the expiry again: busy never sits idle 0.4 s
            await asyncio.sleep(0.1)
            await runner.run("busy")

        assert await storage.get("idle") is None
        assert (await storage.get("busy")).context.get("counter") == 5  # type: ignore[union-attr]
        assert await storage.list_sessions() == ["busy"]
        with pytest.raises(SessionNotFound):
            await runner.run("idle")
        assert loaded is not None
        with pytest.raises(SessionConflict, match="deleted, or expired"):
            await storage.save(loaded)  # a copy loaded before it expired
        await runner.create_session("idle")  # the id is free again
        assert (await storage.get("idle")).version == 1  # type: ignore[union-attr]


async def test_without_refresh_a_session_lives_ttl_from_its_creation(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with RedisSessionStorage(
        redis_url, prefix=prefix, ttl=timedelta(milliseconds=400), refresh_ttl=False
    ) as storage:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("busy")
        for _ in range(3):
            await asyncio.sleep(0.1)
            await runner.run("busy")
            assert raw.pttl(storage.key_of("busy")) <= 300  # counting down, not renewed

        await asyncio.sleep(0.25)
        assert await storage.get("busy") is None


async def test_no_ttl_keeps_sessions_for_ever(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    await storage.save(new("kept"))
    assert raw.pttl(storage.key_of("kept")) == -1  # no expiry
    assert await storage.cleanup() == 0  # Redis expires keys itself: nothing to clean up
    with pytest.raises(ValueError, match="batch must be a positive int"):
        await storage.cleanup(batch=0)


async def test_expired_sessions_are_neither_listed_nor_due_and_leave_the_indexes(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    async with RedisSessionStorage(redis_url, prefix=prefix, ttl=0.2) as storage:
        for session_id in ("a", "b", "c"):
            session = new(session_id)
            session.wake_at = past
            await storage.save(session)
        await asyncio.sleep(0.3)
        async with RedisSessionStorage(redis_url, prefix=prefix) as forever:
            await forever.save(new("kept"))

            assert await storage.list_sessions() == ["kept"]
            assert await storage.due_sessions() == []
            # The readers dropped what they found gone.
            assert raw.zrange(f"{prefix}sessions", 0, -1) == [b"kept"]
            assert raw.zcard(f"{prefix}waiting") == 0


async def test_creates_drop_the_index_entries_of_expired_sessions(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    # A program that never lists must not grow the index for ever: each create with a ttl
    # checks a few entries at random and drops those whose session has expired.
    async with RedisSessionStorage(redis_url, prefix=prefix, ttl=0.05) as storage:
        for i in range(20):
            await storage.save(new(f"old-{i}"))
        await asyncio.sleep(0.1)
        for i in range(30):
            await storage.save(new(f"new-{i}"))
        assert raw.zcard(f"{prefix}sessions") < 30 + 10


# -- the indexes -----------------------------------------------------------------------------------


async def test_listing_skips_and_drops_entries_of_sessions_that_are_gone(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    for session_id in ("b", "d"):
        await storage.save(new(session_id))
    # Entries a crashed process or an expiry may leave: ids with no session behind them.
    raw.zadd(f"{storage.prefix}sessions", {b"a": 0, b"c": 0, b"e": 0, b"\xff\xfe": 0})

    assert await storage.list_sessions() == ["b", "d"]
    assert await storage.list_sessions(limit=1) == ["b"]
    assert await storage.list_sessions(limit=1, after="b") == ["d"]
    assert raw.zrange(f"{storage.prefix}sessions", 0, -1) == [b"b", b"d"]


async def test_listing_pages_through_more_ids_than_one_read_takes(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    ids = [f"s{i:05d}" for i in range(2500)]
    with raw.pipeline(transaction=False) as pipe:  # planted in bulk: quicker than 2500 saves
        for session_id in ids:
            pipe.hset(storage.key_of(session_id), mapping={"v": 1, "b": b"x"})
            pipe.zadd(f"{storage.prefix}sessions", {session_id: 0})
        pipe.execute()

    assert await storage.list_sessions() == ids
    assert await storage.list_sessions(limit=1500, after="s00999") == ids[1000:2500]


async def test_due_sessions_go_by_the_stored_time_when_an_entry_is_stale(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for session_id, minutes in (("moved-later", 10), ("due", -5), ("woken", -5)):
        session = new(session_id)
        session.wake_at = now + timedelta(minutes=minutes)
        await storage.save(session)
    waiting = f"{storage.prefix}waiting"
    early = (now - timedelta(minutes=30) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // (
        timedelta(microseconds=1)
    )
    # An entry that says earlier than the session (its writer moved it later and died before
    # writing its entry), and one of a session that no longer waits.
    raw.zadd(waiting, {b"moved-later": early})
    raw.hdel(storage.key_of("woken"), "w")

    assert await storage.due_sessions(now) == ["due"]
    scores = dict(raw.zrange(waiting, 0, -1, withscores=True))
    assert b"woken" not in scores  # dropped
    assert scores[b"moved-later"] > early  # put right
    assert await storage.due_sessions(now + timedelta(hours=1)) == ["due", "moved-later"]


async def test_due_sessions_with_a_limit_read_only_the_first_entries(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for i in range(300):
        session = new(f"s{i:03d}")
        session.wake_at = now - timedelta(seconds=300 - i)
        await storage.save(session)

    assert await storage.due_sessions(now, 3) == ["s000", "s001", "s002"]
    assert len(await storage.due_sessions(now)) == 300
    assert await storage.due_sessions(now - timedelta(seconds=299)) == ["s000", "s001"]


async def test_due_sessions_page_through_more_entries_than_one_read_takes(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    base = (now - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    waiting = f"{storage.prefix}waiting"
    ids = [f"s{i:05d}" for i in range(2500)]
    with raw.pipeline(transaction=False) as pipe:  # planted in bulk, with stale entries between
        for i, session_id in enumerate(ids):
            wake = base - 10_000_000 + i
            pipe.hset(storage.key_of(session_id), mapping={"v": 1, "b": b"x", "w": wake})
            pipe.zadd(waiting, {session_id: wake, f"gone-{i:05d}": wake})
        pipe.execute()

    assert await storage.due_sessions(now, 1500) == ids[:1500]
    assert await storage.due_sessions(now) == ids
    assert raw.zcard(waiting) == 2500  # the stale entries read were dropped


async def test_a_deleted_session_leaves_both_indexes(
    storage: RedisSessionStorage, raw: redis.Redis
) -> None:
    session = new("gone")
    session.wake_at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    await storage.save(session)

    await storage.delete("gone")

    assert raw.zcard(f"{storage.prefix}sessions") == 0
    assert raw.zcard(f"{storage.prefix}waiting") == 0


# -- keys that are not flowcore's ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plant", "holds"),
    [
        pytest.param(lambda r, k: r.set(k, "someone else's"), "a string", id="string"),
        pytest.param(lambda r, k: r.rpush(k, "x"), "a list", id="list"),
        pytest.param(lambda r, k: r.hset(k, "name", "x"), "a hash", id="hash-without-version"),
        pytest.param(lambda r, k: r.hset(k, "v", "one"), "a hash", id="bad-version"),
    ],
)
async def test_a_key_that_is_not_a_session_is_a_storage_error_and_is_left_alone(
    storage: RedisSessionStorage,
    raw: redis.Redis,
    plant: Callable[[redis.Redis, str], object],
    holds: str,
) -> None:
    key = storage.key_of("taken")
    plant(raw, key)
    before = raw.dump(key)

    for attempt in (storage.get("taken"), storage.save(new("taken")), storage.delete("taken")):
        with pytest.raises(StorageError) as caught:
            await attempt
        message = str(caught.value)
        assert f"the key '{key}' holds {holds}" in message
        assert "not flowcore's" in message
        assert "give this storage a prefix of its own" in message
        assert storage.url in message
    assert raw.dump(key) == before


async def test_an_index_key_of_another_type_is_refused_when_connecting(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    raw.set(f"{prefix}sessions", "not an index")

    with pytest.raises(StorageError, match=rf"the key '{prefix}sessions' holds a string"):
        async with RedisSessionStorage(redis_url, prefix=prefix):
            pass


async def test_an_id_that_is_not_unicode_text_is_refused(storage: RedisSessionStorage) -> None:
    with pytest.raises(StorageError, match="lone surrogate"):
        await storage.save(new("bad\ud800id"))
    with pytest.raises(StorageError, match="lone surrogate"):
        await storage.list_sessions(after="\udfff")
    with pytest.raises(TypeError, match="session_id must be a str"):
        await storage.get(7)  # type: ignore[arg-type]


# -- an application's own client -------------------------------------------------------------------


async def test_a_storage_on_an_applications_client_leaves_the_client_open(
    redis_url: str, prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with RedisSessionStorage(client=client, prefix=prefix, ttl=60) as storage:
            assert storage.url == "redis://127.0.0.1:6379/0"
            runner = FlowRunner(GRAPH, storage)
            await runner.create_session("s1")
            await runner.run("s1")
            assert (await storage.get("s1")).version == 2  # type: ignore[union-attr]
        assert await client.ping()  # closing the storage did not close the client
        assert await client.hget(f"{prefix}{{s1}}", "v") == b"2"
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("arguments", "advice"),
    [
        ({"client": redis.asyncio.Redis(decode_responses=True)}, "decodes responses"),
        ({"client": redis.Redis()}, r"must be a redis.asyncio.Redis"),
        (
            {"client": redis.asyncio.Redis(), "url": "redis://h:6379/0"},
            "a URL or client=, not both",
        ),
        (
            {"client": redis.asyncio.Redis(), "connect_timeout": 1},
            "Unknown option 'connect_timeout'",
        ),
        ({}, "needs a URL"),
    ],
    ids=["decoding", "sync-client", "both", "connection-option", "neither"],
)
def test_a_client_it_cannot_use_is_refused_saying_why(
    arguments: dict[str, object], advice: str
) -> None:
    with pytest.raises(StorageError, match=advice):
        RedisSessionStorage(**arguments)  # type: ignore[arg-type]


# -- a server of the test's own --------------------------------------------------------------------


async def test_a_flushed_redis_is_reported_once_then_new_sessions_work(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis()
    async with open_storage(f"{server.url}?prefix=app:") as storage:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("s1")
        loaded = await storage.get("s1")
        with server.client() as client:
            client.flushall()

        with pytest.raises(StorageError, match="Redis lost its data since this storage connected"):
            await runner.run("s1")
        with pytest.raises(SessionNotFound):  # said once; now it is just missing
            await runner.run("s1")
        await runner.create_session("s2")
        assert (await runner.run("s2")).session_id == "s2"
        with server.client() as client:
            client.flushall()
        assert loaded is not None
        with pytest.raises(StorageError, match="is gone, and Redis lost its data"):
            await storage.save(loaded)


async def test_saves_go_on_when_the_server_forgets_its_scripts(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis()
    async with RedisSessionStorage(server.url) as storage:
        runner = FlowRunner(GRAPH, storage)
        await runner.create_session("s1")
        with server.client() as client:
            client.script_flush()  # as a restart or SCRIPT FLUSH does: EVALSHA finds nothing

            await runner.run("s1")
            await storage.delete("s1")
            assert await storage.due_sessions() == []

            assert len(client.execute_command("SCRIPT", "EXISTS", *_shas())) == 3


def _shas() -> list[bytes]:
    from flowcore_redis._scripts import DELETE, DUE, SAVE

    return [SAVE.sha, DELETE.sha, DUE.sha]


async def test_a_full_redis_refuses_the_save_and_stores_nothing(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    async with RedisSessionStorage(server.url) as storage:
        await storage.save(new("s1", note="small"))
        big = await storage.get("s1")
        assert big is not None
        big.context.set("note", "x" * 4_000_000)
        with pytest.raises(StorageError, match=r"maxmemory.*nothing was stored"):
            await storage.save(big)
        stored = await storage.get("s1")
        assert stored is not None
        assert (stored.version, stored.context.get("note")) == (1, "small")


async def test_a_wrong_password_is_a_storage_error_that_hides_it(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis("--requirepass", "right horse")
    url = f"redis://:wrong%20one@127.0.0.1:{server.port}/0"

    with pytest.raises(StorageError) as caught:
        await open_storage(url).get("s1")

    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{server.port}/0" in message
    assert "Check the user name and password" in message
    assert "wrong" not in message
    async with open_storage(f"redis://:right%20horse@127.0.0.1:{server.port}/0") as storage:
        assert await storage.get("s1") is None


async def test_a_user_without_permissions_is_told_which_it_needs(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis()
    with server.client() as client:
        client.acl_setuser(
            "reader",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            categories=["+@read", "+@connection"],
            commands=["+info", "+client"],
        )

    with pytest.raises(StorageError, match="lacks a permission flowcore-redis needs") as caught:
        async with open_storage(f"redis://reader:pw@127.0.0.1:{server.port}/0"):
            pass
    assert f"redis://reader:***@127.0.0.1:{server.port}/0" in str(caught.value)
