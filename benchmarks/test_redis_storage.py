"""Redis storage: what a step costs, beside the raw redis-py floor and the PostgreSQL step.

    .venv/bin/python -m pytest benchmarks/test_redis_storage.py --benchmark-only

Tracked, not gated: storage timings depend on whatever else the machine runs. Each test measures
every step on its own clock and records p50 and p99 (µs) in the benchmark's ``extra_info``; the
table at the end of the run (also written to ``build/redis-storage-benchmarks.md``) is what
docs/performance.md shows.

- step: ``await runner.run(id)`` (load, run a task that bumps a counter, save) with a 1 KB and a
  100 KB context, in turn with
  - the floor: one ``GET`` and one ``EVALSHA`` (a compare-and-set script) of the same data
    through redis-py's client, ``redis.asyncio.Redis``, directly;
  - the same two commands sent on one of redis-py's connections without its client around them
    (the least any code on redis-py can do);
  - then, apart, a step on PostgreSQL (flowcore-sql), when the server answers;
- throughput: 32 sessions stepping at once through one storage, 1 KB and 100 KB;
- one hot session: 64 runs of it at once through separate runners; every run is committed once
  or refused with SessionConflict, and no update is lost;
- compare-and-set: the save as the storage does it (one ``EVALSHA``) beside ``WATCH`` /
  ``MULTI`` / ``EXEC``, alone and with 64 writers on one session.

Redis is the server at ``FLOWCORE_TEST_REDIS_URL`` (default: the local one); without it the
benchmarks are skipped. Keys go under a prefix of the run's own, removed at its end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from flowcore_redis import RedisSessionStorage

from flowcore import (
    FlowRunner,
    Session,
    SessionConflict,
)

from .storage_figures import (
    GRAPH,
    Figures,
    context_of,
    hot_session,
    many_sessions,
    percentiles,
    run,
    timed,
)

REDIS_URL = os.environ.get("FLOWCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PREFIX = f"flowcore-bench:{os.getpid()}:{uuid.uuid4().hex[:6]}:"
SIZES = {"1KB": 1024, "100KB": 100 * 1024}
STEPS = 3000  # measured steps per figure (after a warm-up)
FIGURES = Figures(Path(__file__).resolve().parent.parent / "build" / "redis-storage-benchmarks.md")
record = FIGURES.record

FLOOR_CAS = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1] + 1)
return 1
"""
"""The floor's compare-and-set: a version key beside the blob's, in the same slot."""


async def alternate(
    contenders: dict[str, Callable[[], Awaitable[Any]]], count: int
) -> dict[str, list[float]]:
    """Time each contender ``count`` times, one of each in turn (after a warm-up)."""
    for step in contenders.values():
        await timed(step, 300)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(count):
        for name, step in contenders.items():
            samples[name] += await timed(step, 1)
    return samples


def ratio(a: dict[str, float], b: dict[str, float]) -> str:
    return f"{a['p50_us'] / b['p50_us']:.2f}x"


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def redis_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """Skip without Redis; remove the run's keys afterwards; print the figures as the Markdown
    table docs/performance.md shows."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=3) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"Redis is unreachable ({type(exc).__name__}: {exc})")
    yield
    with redis.Redis.from_url(REDIS_URL) as client:
        for key in client.scan_iter(match=f"{PREFIX}*", count=1000):
            client.delete(key)
    FIGURES.report(request)


def storage(**options: Any) -> RedisSessionStorage:
    return RedisSessionStorage(REDIS_URL, prefix=PREFIX, **options)


async def postgres_step(size: int) -> tuple[Callable[[], Awaitable[Any]], Any] | None:
    """A step on PostgreSQL through flowcore-sql, to time beside Redis's; None without it."""
    try:
        from flowcore_sql import PostgresSessionStorage
    except ImportError:
        return None
    schema = f"flowcore_bench_redis_{os.getpid()}"
    postgres = PostgresSessionStorage(POSTGRES_URL, schema=schema, connect_timeout=3)
    try:
        await postgres.__aenter__()
    except Exception:  # no server: the comparison is left out
        await postgres.close()
        return None
    runner = FlowRunner(GRAPH, postgres)
    await postgres.delete("pg")
    await runner.create_session("pg", context=context_of(size))
    return (lambda: runner.run("pg")), postgres


async def drop_postgres(postgres: Any) -> None:
    import asyncpg

    await postgres.close()
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(
            f'DROP SCHEMA IF EXISTS "flowcore_bench_redis_{os.getpid()}" CASCADE'
        )
    finally:
        await connection.close()


# -- a step ----------------------------------------------------------------------------------------


class Floor:
    """One GET and one EVALSHA of a blob of the step's size, through redis-py's client or on
    one of its connections."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.keys = (f"{PREFIX}{{floor}}:blob".encode(), f"{PREFIX}{{floor}}:version".encode())
        self.version = 0
        self.client = redis.asyncio.Redis.from_url(REDIS_URL)
        self.connection: Any = None
        self.sha = b""

    async def open(self) -> None:
        await self.client.set(self.keys[0], self.blob)
        await self.client.set(self.keys[1], 0)
        self.sha = (await self.client.script_load(FLOOR_CAS)).encode()
        self.connection = await self.client.connection_pool.get_connection()

    async def through_the_client(self) -> None:
        blob = await self.client.get(self.keys[0])
        assert await self.client.evalsha(self.sha, 2, *self.keys, self.version, blob) == 1
        self.version += 1

    async def on_a_connection(self) -> None:
        connection = self.connection
        key, version_key = self.keys
        await connection.send_packed_command(connection.pack_command("GET", key), False)
        blob = await connection.read_response()
        command = connection.pack_command(
            "EVALSHA", self.sha, 2, key, version_key, self.version, blob
        )
        await connection.send_packed_command(command, False)
        assert await connection.read_response() == 1
        self.version += 1

    async def close(self) -> None:
        await self.client.connection_pool.release(self.connection)
        await self.client.aclose()


@pytest.mark.parametrize("size", SIZES)
def test_step_on_redis_beside_the_raw_floor_and_postgres(benchmark: Any, size: str) -> None:
    async def measure() -> None:
        floor = Floor(secrets.token_bytes(SIZES[size]))
        await floor.open()
        postgres = await postgres_step(SIZES[size])
        async with storage() as redis_storage:
            runner = FlowRunner(GRAPH, redis_storage)
            session_id = f"step-{size}"
            await redis_storage.delete(session_id)
            await runner.create_session(session_id, context=context_of(SIZES[size]))

            async def step() -> None:
                await runner.run(session_id)

            try:
                # The floors in turn with the step, so that all see the same noise; then the
                # PostgreSQL step in turn with the step, apart, since a PostgreSQL server at
                # work beside Redis slows both.
                floors = await alternate(
                    {
                        "step": step,
                        "client": floor.through_the_client,
                        "connection": floor.on_a_connection,
                    },
                    STEPS,
                )
                versus_postgres = (
                    None
                    if postgres is None
                    else await alternate({"step": step, "postgres": postgres[0]}, STEPS // 3)
                )
            finally:
                await floor.close()
                if postgres is not None:
                    await drop_postgres(postgres[1])
        figures = {name: percentiles(samples) for name, samples in floors.items()}
        redis_step = figures["step"]
        versus = {
            "vs floor": ratio(redis_step, figures["client"]),
            "vs connection floor": ratio(redis_step, figures["connection"]),
        }
        if versus_postgres is not None:
            beside = {name: percentiles(samples) for name, samples in versus_postgres.items()}
            versus["PostgreSQL step / Redis step"] = ratio(beside["postgres"], beside["step"])
        record(benchmark, f"Redis step, {size} context", **redis_step, **versus)
        record(
            benchmark, f"Redis floor: GET + EVALSHA, redis-py client, {size}", **figures["client"]
        )
        record(
            benchmark, f"Redis floor: the same on one connection, {size}", **figures["connection"]
        )
        if versus_postgres is not None:
            record(
                benchmark,
                f"PostgreSQL step, in turn with Redis's, {size} context",
                **beside["postgres"],
            )

    run(benchmark, measure)


# -- many sessions, one session --------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_throughput_with_32_sessions(benchmark: Any, size: str) -> None:
    async def measure() -> None:
        async with storage() as redis_storage:
            figures = await many_sessions(
                redis_storage, f"many-{size}", context_of(SIZES[size]), warmup=10
            )
        record(benchmark, f"Redis: 32 sessions at once, {size}", **figures)

    run(benchmark, measure)


def test_64_concurrent_runs_of_one_session(benchmark: Any) -> None:
    rounds = 20

    async def measure() -> None:
        figures = await hot_session([storage(pool_size=16) for _ in range(4)], rounds)
        record(benchmark, "Redis: 64 runs of one session at once", **figures)

    run(benchmark, measure)


# -- compare-and-set: one script, or WATCH / MULTI / EXEC ------------------------------------------


class WatchedSave:
    """The same save with optimistic locking: ``WATCH`` the session's hash and read its version,
    then ``MULTI`` / ``HSET`` / ``EXEC``, which Redis refuses (a nil reply) if the hash changed
    since the ``WATCH``. Two round trips, on a connection that no other command may use between
    them, so one connection per save in flight."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.client = redis.asyncio.Redis.from_url(REDIS_URL)

    async def save(self, expected: int, blob: bytes) -> bool:
        connection = await self.client.connection_pool.get_connection()
        try:
            pack = connection.pack_commands
            await connection.send_packed_command(
                pack([("WATCH", self.key), ("HGET", self.key, "v")]), False
            )
            await connection.read_response()
            stored = await connection.read_response()
            if int(stored or 0) != expected:
                await connection.send_packed_command(connection.pack_command("UNWATCH"), False)
                await connection.read_response()
                return False
            await connection.send_packed_command(
                pack([("MULTI",), ("HSET", self.key, "v", expected + 1, "b", blob), ("EXEC",)]),
                False,
            )
            await connection.read_response()  # OK
            await connection.read_response()  # QUEUED
            return await connection.read_response() is not None  # nil: refused
        finally:
            await self.client.connection_pool.release(connection)

    async def close(self) -> None:
        await self.client.aclose()


def test_compare_and_set_one_script_or_watch_multi_exec(benchmark: Any) -> None:
    writers = 64
    rounds = 20

    async def measure() -> None:
        blob = secrets.token_bytes(1024)
        async with storage(pool_size=writers) as redis_storage:
            session = Session.new_from_task("cas", "count", context={"notes": blob})
            await redis_storage.delete("cas")
            await redis_storage.save(session)
            watched = WatchedSave(f"{PREFIX}{{cas-watch}}".encode())
            await watched.client.hset(watched.key, mapping={"v": 1, "b": blob})
            version = [1]

            async def script_save() -> None:
                await redis_storage.save(session)

            async def watched_save() -> None:
                assert await watched.save(version[0], blob)
                version[0] += 1

            try:
                for save in (script_save, watched_save):
                    await timed(save, 300)
                alone: dict[str, list[float]] = {"script": [], "watch": []}
                for _ in range(STEPS):
                    alone["script"] += await timed(script_save, 1)
                    alone["watch"] += await timed(watched_save, 1)

                async def contended(
                    save: Callable[[int], Awaitable[bool]], load: Callable[[], Awaitable[int]]
                ) -> tuple[float, int]:
                    durations, won = [], 0
                    for _ in range(rounds):
                        expected = await load()
                        started = time.perf_counter()
                        outcomes = await asyncio.gather(*(save(expected) for _ in range(writers)))
                        durations.append(time.perf_counter() - started)
                        won += sum(outcomes)
                    return statistics.median(durations), won

                async def script_try(expected: int) -> bool:
                    copy = Session.new_from_task("cas", "count", context={"notes": blob})
                    copy.version = expected
                    try:
                        await redis_storage.save(copy)
                    except SessionConflict:
                        return False
                    return True

                async def script_load() -> int:
                    loaded = await redis_storage.get("cas")
                    assert loaded is not None
                    return loaded.version

                async def watch_load() -> int:
                    return int(await watched.client.hget(watched.key, "v"))

                script_round, script_won = await contended(script_try, script_load)
                watch_round, watch_won = await contended(
                    lambda expected: watched.save(expected, blob), watch_load
                )
            finally:
                await watched.close()
        script, watch = percentiles(alone["script"]), percentiles(alone["watch"])
        record(
            benchmark,
            "CAS save: one EVALSHA (the storage's)",
            **script,
            **{
                "64 writers, round p50": f"{script_round * 1e3:.1f} ms",
                "won/round": round(script_won / rounds, 1),
                "connections": f"pool_size (here {writers}); any free one",
            },
        )
        record(
            benchmark,
            "CAS save: WATCH, then MULTI/HSET/EXEC",
            **watch,
            **{
                "vs script": ratio(watch, script),
                "64 writers, round p50": f"{watch_round * 1e3:.1f} ms",
                "won/round": round(watch_won / rounds, 1),
                "connections": "one per save in flight",
            },
        )

    run(benchmark, measure)
