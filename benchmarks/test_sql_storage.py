"""SQL storage: what a step costs on SQLite and PostgreSQL, beside the raw driver's floor.

    .venv/bin/python -m pytest benchmarks/test_sql_storage.py --benchmark-only

Tracked, not gated: storage timings depend on the disk and on whatever else the machine runs.
Each test measures every step on its own clock and records p50 and p99 (µs) in the benchmark's
``extra_info``; the table at the end of the run (also written to
``build/sql-storage-benchmarks.md``) is what docs/performance.md shows.

- step: ``await runner.run(id)`` (load, run a task that bumps a counter, save) with a 1 KB and a
  100 KB context;
- floor: one SELECT and one UPDATE of the same row through asyncpg directly, on the same table
  and in the same run, alternating with the PostgreSQL steps so that both see the same noise;
- throughput: 32 sessions stepping at once through one storage;
- one hot session: 64 runs of it at once through separate runners; every run is committed once
  or refused with SessionConflict, and no update is lost.

PostgreSQL is the server at ``FLOWCORE_TEST_POSTGRES_URL`` (default: the local one); without it
the PostgreSQL benchmarks are skipped.
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

import asyncpg
import pytest
from flowcore_sql import PostgresSessionStorage, SqliteSessionStorage

from flowcore import (
    Context,
    FlowRunner,
    GraphBuilder,
    NextAction,
    SessionConflict,
    SessionStorage,
    TaskResult,
    task,
)

POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SCHEMA = f"flowcore_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
SIZES = {"1KB": 1024, "100KB": 100 * 1024}
STEPS = 3000  # measured steps per figure (after a warm-up)
RESULTS: dict[str, dict[str, Any]] = {}
TABLE = Path(__file__).resolve().parent.parent / "build" / "sql-storage-benchmarks.md"


@task("count")
def count(ctx: Context) -> TaskResult:
    ctx.set("counter", ctx.get("counter", 0) + 1)
    return TaskResult(None, NextAction.WaitForInput)


GRAPH = GraphBuilder("bench").add_task(count).build()


def context_of(size: int) -> dict[str, Any]:
    """About ``size`` bytes of context that does not compress (as real data mostly does not)."""
    return {"counter": 0, "notes": secrets.token_hex(size // 2)}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
    }


async def timed(step: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await step()
        samples.append(clock() - started)
    return samples


def record(benchmark: Any, name: str, **figures: Any) -> None:
    benchmark.extra_info.update(figures)
    RESULTS[name] = figures


def run(benchmark: Any, coroutine: Callable[[], Awaitable[None]]) -> None:
    """Let pytest-benchmark time one round of ``coroutine`` (the figures come from inside)."""
    benchmark.pedantic(lambda: asyncio.run(coroutine()), rounds=1, iterations=1)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is unreachable ({type(exc).__name__}: {exc})")
    yield POSTGRES_URL

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await connection.close()

    asyncio.run(drop())


@pytest.fixture(scope="module", autouse=True)
def table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the figures of the run as the Markdown table docs/performance.md shows."""
    yield
    if not RESULTS:
        return
    lines = [
        "| Benchmark | p50 | p99 | Other |",
        "|---|---:|---:|---|",
    ]
    for name, f in RESULTS.items():
        p50 = f"{f['p50_us']:.0f} µs" if "p50_us" in f else ""
        p99 = f"{f['p99_us']:.0f} µs" if "p99_us" in f else ""
        other = ", ".join(f"{k} {v}" for k, v in f.items() if not k.endswith("_us"))
        lines.append(f"| {name} | {p50} | {p99} | {other} |")
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text("\n".join(lines) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


def open_backend(backend: str, tmp_path: Path, url: str | None, **options: Any) -> SessionStorage:
    if backend == "sqlite":
        return SqliteSessionStorage(tmp_path / "bench.db")
    return PostgresSessionStorage(str(url), schema=SCHEMA, **options)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "postgresql":
        return request.param, request.getfixturevalue("postgres_url")
    return request.param, None


# -- a step ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_step_on_sqlite(benchmark: Any, tmp_path: Path, size: str) -> None:
    async def measure() -> None:
        async with SqliteSessionStorage(tmp_path / "bench.db") as storage:
            runner = FlowRunner(GRAPH, storage)
            await runner.create_session("s", context=context_of(SIZES[size]))
            await timed(lambda: runner.run("s"), 300)  # warm-up
            samples = await timed(lambda: runner.run("s"), STEPS)
        record(benchmark, f"SQLite step, {size} context", **percentiles(samples))

    run(benchmark, measure)


@pytest.mark.parametrize("size", SIZES)
def test_step_on_postgres_beside_the_raw_floor(
    benchmark: Any, postgres_url: str, size: str
) -> None:
    async def measure() -> None:
        async with PostgresSessionStorage(postgres_url, schema=SCHEMA) as storage:
            runner = FlowRunner(GRAPH, storage)
            session_id = f"step-{size}"
            await storage.delete(session_id)
            await runner.create_session(session_id, context=context_of(SIZES[size]))
            driver = await asyncpg.connect(postgres_url)
            floor_id = f"floor-{size}"
            floor = await floor_pair(driver, storage, floor_id)
            try:
                await timed(lambda: runner.run(session_id), 300)  # warm-up
                await timed(floor, 300)
                steps: list[float] = []
                floors: list[float] = []
                for _ in range(STEPS):  # one of each in turn
                    steps += await timed(lambda: runner.run(session_id), 1)
                    floors += await timed(floor, 1)
            finally:
                await driver.close()
        step, raw = percentiles(steps), percentiles(floors)
        ratio = round(step["p50_us"] / raw["p50_us"], 2)
        record(benchmark, f"PostgreSQL step, {size} context", **step, **{"vs floor": f"{ratio}x"})
        record(benchmark, f"PostgreSQL raw floor, {size} row", **raw)

    run(benchmark, measure)


async def floor_pair(
    driver: asyncpg.Connection, storage: PostgresSessionStorage, session_id: str
) -> Callable[[], Awaitable[None]]:
    """One SELECT and one UPDATE of a row of the sessions table, through asyncpg directly."""
    source = await storage.get(session_id.replace("floor", "step"))
    assert source is not None
    await storage.delete(session_id)
    source.id, source.version = session_id, 0
    await storage.save(source)
    table = f'"{SCHEMA}".flowcore_sessions'
    select = f"SELECT version, blob FROM {table} WHERE id = $1"
    update = f"UPDATE {table} SET version = $1, blob = $2 WHERE id = $3 AND version = $4"

    async def pair() -> None:
        version, blob = await driver.fetchrow(select, session_id)
        await driver.execute(update, version + 1, blob, session_id, version)

    return pair


# -- many sessions, one session --------------------------------------------------------------------


def test_throughput_with_32_sessions(
    benchmark: Any, backend: tuple[str, str | None], tmp_path: Path
) -> None:
    name, url = backend
    per_session = 100

    async def measure() -> None:
        async with open_backend(name, tmp_path, url) as storage:
            runner = FlowRunner(GRAPH, storage)
            ids = [f"many-{i}" for i in range(32)]
            for session_id in ids:
                await storage.delete(session_id)
                await runner.create_session(session_id, context=context_of(1024))

            async def keep_stepping(session_id: str) -> list[float]:
                return await timed(lambda: runner.run(session_id), per_session)

            started = time.perf_counter()
            samples = await asyncio.gather(*(keep_stepping(s) for s in ids))
            elapsed = time.perf_counter() - started
        steps = [s for each in samples for s in each]
        record(
            benchmark,
            f"{label(name)}: 32 sessions at once, 1KB",
            **percentiles(steps),
            **{"steps/s": round(len(steps) / elapsed)},
        )

    run(benchmark, measure)


def test_64_concurrent_runs_of_one_session(
    benchmark: Any, backend: tuple[str, str | None], tmp_path: Path
) -> None:
    name, url = backend
    rounds = 20

    async def measure() -> None:
        # 16 runs at once per storage: a pool that size keeps them from opening connections
        storages = [open_backend(name, tmp_path, url, pool_size=16) for _ in range(4)]
        for storage in storages:
            await storage.__aenter__()
        try:
            runners = [FlowRunner(GRAPH, storages[i % 4]) for i in range(64)]
            await storages[0].delete("hot")
            await runners[0].create_session("hot")
            committed = conflicts = 0
            durations = []
            for _ in range(rounds):
                started = time.perf_counter()
                outcomes = await asyncio.gather(
                    *(r.run("hot") for r in runners), return_exceptions=True
                )
                durations.append(time.perf_counter() - started)
                conflicts += sum(isinstance(o, SessionConflict) for o in outcomes)
                committed += sum(not isinstance(o, BaseException) for o in outcomes)
                assert all(
                    isinstance(o, SessionConflict) for o in outcomes if isinstance(o, BaseException)
                )
            stored = await storages[0].get("hot")
            assert stored is not None
            lost = committed - stored.context.get("counter", 0)
            assert lost == 0
        finally:
            for storage in storages:
                await storage.close()
        record(
            benchmark,
            f"{label(name)}: 64 runs of one session at once",
            **{
                "round p50": f"{statistics.median(durations) * 1e3:.1f} ms",
                "committed/round": round(committed / rounds, 1),
                "conflicts/round": round(conflicts / rounds, 1),
                "lost updates": lost,
            },
        )

    run(benchmark, measure)


def label(backend: str) -> str:
    return "SQLite" if backend == "sqlite" else "PostgreSQL"
