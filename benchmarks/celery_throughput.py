"""flowcore-celery's speed: steps per second by worker processes, beside one process, on PostgreSQL.

    .venv/bin/python benchmarks/celery_throughput.py                   # 10,000 sessions x 3 steps
    .venv/bin/python benchmarks/celery_throughput.py --sessions 100000 --workers 1 2 4

Not run by ``make test``: it takes minutes. What it measures, each on a PostgreSQL schema of its
own (``FLOWCORE_TEST_POSTGRES_URL``, default the local server) and RabbitMQ
(``FLOWCORE_TEST_AMQP_URL``), in one run so that the figures share the machine's noise:

- throughput: ``--sessions`` sessions of a three-task graph (three steps each), created first,
  then driven to completion by one Celery worker with 1, 2, 4 pool processes (``--workers``), a
  drive per session submitted at once; steps per second from the first submit to the last
  result. Beside it, examples/batch.py's ``run_batch`` in this one process on the same storage
  (``--concurrency`` sessions at a time);
- latency: one step at a time, ``--latency-steps`` of them: a direct ``runner.run()`` against
  ``submit(drive=False).get()`` through the broker and one worker (median and p90, ms);
- one hot session: ``--hot`` single steps of one session (its second task takes 50 ms)
  submitted at once to 4 pool processes: how many conflicts were retried, how long all took;
- the floors the projection rests on: PostgreSQL commits per second (an UPDATE of one row per
  transaction, 16 connections) and RabbitMQ messages per second (publish and consume, one
  connection each way, acknowledged like a worker's); and what a lock per step would add (a
  PostgreSQL advisory lock taken and released).

The worker processes are ``celery -A benchmarks.celery_throughput worker``: this module is also
their Celery app, set up from the environment the benchmark gives them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.batch import check_vendor, extract, invoice, needs_review, run_batch  # noqa: E402
from flowcore import FlowRunner, Graph, GraphBuilder, NextAction, TaskResult, open_storage, task  # noqa: E402

AMQP_URL = os.environ.get("FLOWCORE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@task("check_vendor")
async def check(ctx):
    await asyncio.sleep(ctx.get("sleep", 0))  # the hot session's steps take a while
    return await check_vendor.run(ctx)


@task("archive")
def archive(ctx):
    outcome = "review" if needs_review(ctx) else "approved"
    ctx.set("outcome", outcome)
    return TaskResult(outcome, NextAction.End)


def build_graph() -> Graph:
    """examples/batch.py's invoices in three steps: extract, check_vendor, then archive (which
    decides itself, rather than in a fourth step)."""
    return (
        GraphBuilder("bench-invoices")
        .add_task(extract)
        .add_task(check)
        .add_task(archive)
        .add_edge("extract", "check_vendor")
        .add_edge("check_vendor", "archive")
        .build()
    )


graph = build_graph()


def make_app(queue: str, storage: str):
    import flowcore_celery
    from celery import Celery

    app = Celery("flowcore-celery-bench", broker=AMQP_URL, backend="rpc://")
    app.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    flowcore_celery.install(app, graph="benchmarks.celery_throughput:graph", storage=storage)
    return app


if os.environ.get("FLOWCORE_BENCH_QUEUE"):  # a worker process of the benchmark
    from celery import signals

    app = make_app(os.environ["FLOWCORE_BENCH_QUEUE"], os.environ["FLOWCORE_BENCH_STORAGE"])

    @signals.worker_ready.connect
    def say_ready(**_: object) -> None:
        # Whatever the log level: the benchmark waits for this line.
        print("flowcore-celery: worker ready", file=sys.stderr, flush=True)


class Worker:
    """One ``celery worker`` with ``concurrency`` pool processes, stopped by PID."""

    def __init__(
        self, queue: str, storage: str, concurrency: int, log: Path, level: str = "WARNING"
    ) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FLOWCORE_BENCH_QUEUE": queue,
            "FLOWCORE_BENCH_STORAGE": storage,
            "FLOWCORE_LOAD_PLUGINS": "sql",
        }
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("celery")),
                    "-A", "benchmarks.celery_throughput", "worker",
                    "--concurrency", str(concurrency), "--hostname", f"{queue}@%h",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "--loglevel", level,
                ],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while b"flowcore-celery: worker ready" not in log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the worker did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        for number, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, number)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def conflicts(self) -> int:
        return self.log.read_text(errors="replace").count("SessionConflict; step sent again")


@contextlib.contextmanager
def workers(storage_url: str, concurrency: int, log: Path, level: str = "WARNING") -> Iterator[Any]:
    """A queue of its own, a worker with ``concurrency`` pool processes on it, and the Celery
    app that submits to it; stopped, closed and deleted after the block."""
    queue = f"fc-bench-{uuid.uuid4().hex[:10]}"
    worker = Worker(queue, storage_url, concurrency, log, level=level)
    client = make_app(queue, storage_url)
    try:
        yield worker, client
    finally:
        worker.stop()
        client.close()
        delete_queue(queue)


async def create_sessions(storage_url: str, count: int, prefix: str) -> None:
    async with open_storage(storage_url) as storage:
        runner = FlowRunner(graph, storage)
        numbers = iter(range(count))

        async def creator() -> None:
            for number in numbers:
                await runner.create_session(f"{prefix}-{number}", context=invoice(number))

        await asyncio.gather(*(creator() for _ in range(16)))


def through_celery(storage_url: str, sessions: int, concurrency: int, logs: Path) -> dict:
    import flowcore_celery

    prefix = f"c{concurrency}-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_sessions(storage_url, sessions, prefix))
    with workers(storage_url, concurrency, logs / f"worker-{concurrency}.log") as (worker, client):
        started = time.perf_counter()
        results = [
            flowcore_celery.submit(client, f"{prefix}-{n}", check=False) for n in range(sessions)
        ]
        submitted = time.perf_counter() - started
        steps = sum(result.get(timeout=3600)["steps"] for result in results)
        elapsed = time.perf_counter() - started
    return {
        "steps": steps,
        "seconds": elapsed,
        "submit_seconds": submitted,
        "conflicts": worker.conflicts(),  # its log outlives it
    }


def in_one_process(storage_url: str, sessions: int, concurrency: int) -> dict:
    async def main() -> dict:
        async with open_storage(storage_url) as storage:
            runner = FlowRunner(graph, storage)
            started = time.perf_counter()
            totals = await run_batch(
                runner,
                iter(range(sessions)),
                concurrency=concurrency,
                prefix=f"b-{uuid.uuid4().hex[:6]}",
            )
            return {"steps": totals.steps, "seconds": time.perf_counter() - started}

    return asyncio.run(main())


def latency(storage_url: str, steps: int, logs: Path) -> dict:
    import flowcore_celery

    prefix = f"lat-{uuid.uuid4().hex[:6]}"
    sessions = steps // 3 + 1

    async def direct() -> list[float]:
        await create_sessions(storage_url, sessions, prefix + "-d")
        async with open_storage(storage_url) as storage:
            runner = FlowRunner(graph, storage)
            times = []
            for n in range(sessions):
                for _ in range(3):
                    started = time.perf_counter()
                    await runner.run(f"{prefix}-d-{n}")
                    times.append(time.perf_counter() - started)
            return times[:steps]

    direct_times = asyncio.run(direct())
    asyncio.run(create_sessions(storage_url, sessions, prefix + "-c"))
    with workers(storage_url, 1, logs / "worker-latency.log") as (_, client):
        flowcore_celery.submit(client, f"{prefix}-c-0", drive=False, check=False).get()  # warm
        celery_times = []
        for n in range(1, sessions):
            for _ in range(3):
                started = time.perf_counter()
                flowcore_celery.submit(client, f"{prefix}-c-{n}", drive=False, check=False).get()
                celery_times.append(time.perf_counter() - started)
    return {"direct": direct_times, "celery": celery_times[:steps]}


def hot_session(storage_url: str, count: int, logs: Path) -> dict:
    import flowcore_celery

    session_id = f"hot-{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        async with open_storage(storage_url) as storage:
            await FlowRunner(graph, storage).create_session(
                session_id, context={**invoice(1), "sleep": 0.05}
            )

    asyncio.run(create())
    with workers(storage_url, 4, logs / "worker-hot.log", level="INFO") as (worker, client):
        time.sleep(2)  # every pool process has opened its storage: all four take steps at once
        started = time.perf_counter()
        results = [
            flowcore_celery.submit(client, session_id, drive=False, check=False)
            for _ in range(count)
        ]
        statuses = [result.get(timeout=600)["status"] for result in results]
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "conflicts": worker.conflicts(),
        "errors": statuses.count("Error"),
    }


def postgres_commits_per_second(seconds: float = 5.0, connections: int = 16) -> float:
    import asyncpg

    async def main() -> float:
        table = f"fc_bench_commits_{uuid.uuid4().hex[:8]}"
        setup = await asyncpg.connect(POSTGRES_URL)
        await setup.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        await setup.executemany(
            f"INSERT INTO {table} VALUES ($1, 0)", [(i,) for i in range(connections)]
        )
        done = 0
        deadline = time.perf_counter() + seconds

        async def writer(row: int) -> None:
            nonlocal done
            connection = await asyncpg.connect(POSTGRES_URL)
            while time.perf_counter() < deadline:
                await connection.execute(f"UPDATE {table} SET n = n + 1 WHERE id = $1", row)
                done += 1
            await connection.close()

        started = time.perf_counter()
        await asyncio.gather(*(writer(row) for row in range(connections)))
        rate = done / (time.perf_counter() - started)
        await setup.execute(f"DROP TABLE {table}")
        await setup.close()
        return rate

    return asyncio.run(main())


def advisory_lock_ms(rounds: int = 3000) -> float:
    """What a lock per step would add: PostgreSQL's pg_advisory_lock and unlock, median ms."""
    import asyncpg

    async def main() -> float:
        connection = await asyncpg.connect(POSTGRES_URL)
        times = []
        for key in range(rounds):
            started = time.perf_counter()
            await connection.execute("SELECT pg_advisory_lock($1)", key)
            await connection.execute("SELECT pg_advisory_unlock($1)", key)
            times.append(time.perf_counter() - started)
        await connection.close()
        return statistics.median(times) * 1000

    return asyncio.run(main())


def broker_messages_per_second(count: int = 20_000) -> float:
    from kombu import Connection, Exchange, Producer, Queue

    name = f"fc-bench-raw-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(""), routing_key=name, durable=True)
    body = {"session_id": "invoice-1", "request_id": uuid.uuid4().hex, "drive": True}
    with Connection(AMQP_URL) as publisher, Connection(AMQP_URL) as consumer:
        queue(publisher.default_channel).declare()
        received = 0

        def on_message(_body: object, message) -> None:
            nonlocal received
            received += 1
            message.ack()

        started = time.perf_counter()
        producer = Producer(publisher)
        with consumer.Consumer(queue, callbacks=[on_message], prefetch_count=64):
            for _ in range(count):
                producer.publish(body, routing_key=name, delivery_mode=2, serializer="json")
            while received < count:
                consumer.drain_events(timeout=30)
        rate = count / (time.perf_counter() - started)
        queue(publisher.default_channel).delete()
    return rate


def delete_queue(name: str) -> None:
    from kombu import Connection

    with Connection(AMQP_URL) as connection:
        connection.default_channel.queue_delete(name)


def drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()

    asyncio.run(drop())


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-steps", type=int, default=600)
    parser.add_argument("--hot", type=int, default=40)
    parser.add_argument("--logs", type=Path, default=ROOT / "build" / "celery-bench")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    schema = f"fc_celery_bench_{uuid.uuid4().hex[:8]}"
    storage_url = f"{POSTGRES_URL}?schema={schema}&pool_size=4&max_overflow=4"
    print(f"{args.sessions:,} sessions x 3 steps on PostgreSQL; {os.cpu_count()} CPU(s)")
    try:
        for concurrency in args.workers:
            got = through_celery(storage_url, args.sessions, concurrency, args.logs)
            print(
                f"celery, {concurrency} pool process(es): {got['steps']:,} steps in "
                f"{got['seconds']:.1f} s = {got['steps'] / got['seconds']:,.0f} steps/s "
                f"(submits took {got['submit_seconds']:.1f} s; {got['conflicts']} conflicts)"
            )
        got = in_one_process(storage_url, args.sessions, args.concurrency)
        print(
            f"examples/batch.py's run_batch, one process, {args.concurrency} at a time: "
            f"{got['steps']:,} steps in {got['seconds']:.1f} s = "
            f"{got['steps'] / got['seconds']:,.0f} steps/s"
        )
        got = latency(storage_url, args.latency_steps, args.logs)
        direct, celery = got["direct"], got["celery"]
        print(
            f"one step at a time ({len(direct)} steps): direct run() median {ms(direct, 0.5)} ms "
            f"p90 {ms(direct, 0.9)} ms; submit(drive=False).get() median {ms(celery, 0.5)} ms "
            f"p90 {ms(celery, 0.9)} ms; overhead of the broker round trip "
            f"{(statistics.median(celery) - statistics.median(direct)) * 1000:.2f} ms"
        )
        got = hot_session(storage_url, args.hot, args.logs)
        print(
            f"one hot session, {args.hot} single steps at once, 4 pool processes: "
            f"{got['seconds']:.2f} s, {got['conflicts']} conflicts retried, "
            f"{got['errors']} errors"
        )
        print(f"PostgreSQL: {postgres_commits_per_second():,.0f} commits/s (16 connections)")
        print(f"A lock per step: advisory lock + unlock {advisory_lock_ms():.3f} ms (median)")
        print(f"RabbitMQ: {broker_messages_per_second():,.0f} messages/s (persistent, acked)")
    finally:
        drop_schema(schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
