"""examples/batch.py's invoices, stepped by Celery workers instead of one process.

This module is both the Celery app the workers run and the script that fills their queue.
Start RabbitMQ (``rabbitmq-server -detached``) and, from the repository root, one worker or more
(on this machine or others that share the storage and the broker), then the batch:

    celery -A examples.celery_batch worker --loglevel INFO       # a worker, its pool processes
    python examples/celery_batch.py --sessions 10000             # creates, submits, waits

``CELERY_BATCH_BROKER`` (default ``amqp://guest:guest@127.0.0.1:5672//``) and
``CELERY_BATCH_STORAGE`` (default ``sqlite:///.flowcore/celery-batch.db?create_dirs=true``; use
PostgreSQL, e.g. ``postgresql://app@db/claims``, for workers on several machines) must be the same
for the workers and the batch. The batch creates the sessions, submits one drive per invoice —
keeping at most ``--in-flight`` of them unanswered, so that a million sessions never means a
million results held in memory — and shows a progress bar as the workers' results come back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from celery import Celery

if __package__ in (None, ""):  # run as a script: examples/ is its own folder, import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flowcore_celery

from examples.batch import Progress, Totals, build_graph, invoice, positive, speed
from flowcore import FlowRunner, GraphError, open_storage

__all__ = ["app", "create_sessions", "drive_all", "main"]

BROKER = os.environ.get("CELERY_BATCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
STORAGE = os.environ.get(
    "CELERY_BATCH_STORAGE", "sqlite:///.flowcore/celery-batch.db?create_dirs=true"
)

# The rpc:// backend sends each result straight back to the process that submitted it: no
# result store to run. A worker prefetching one message per pool process at a time keeps the
# drives of a big batch spread evenly over the workers.
app = Celery("celery_batch", broker=BROKER, backend="rpc://")
app.conf.update(
    task_default_queue=os.environ.get("CELERY_BATCH_QUEUE", "flowcore-invoices"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
flowcore_celery.install(app, graph="examples.batch:build_graph", storage=STORAGE)


async def create_sessions(storage_url: str, ids: Iterable[tuple[str, int]], at_once: int) -> None:
    """Create the sessions ``(id, invoice number)``, ``at_once`` at a time."""
    async with open_storage(storage_url) as storage:
        runner = FlowRunner(build_graph(), storage)
        pending = iter(ids)

        async def creator() -> None:
            for session_id, number in pending:  # shared: each id goes to one creator
                await runner.create_session(session_id, context=invoice(number))

        await asyncio.gather(*(creator() for _ in range(at_once)))


def drive_all(ids: Iterator[str], *, in_flight: int, progress: Progress | None = None) -> Totals:
    """Submit a drive for each session id, at most ``in_flight`` unanswered at once; collect
    what each drive ended with."""
    totals = Totals()
    waiting: collections.deque[object] = collections.deque()

    def collect(result: object) -> None:
        value = result.get(timeout=3600)  # type: ignore[attr-defined]
        if value["status"] != "Completed":
            raise RuntimeError(f"session {value['session_id']} stopped: {value}")
        totals.sessions += 1
        totals.steps += value["steps"]
        totals.outcomes[value["response"] or "?"] += 1
        if progress is not None:
            progress.update(totals.sessions, totals.steps)

    for session_id in ids:
        # The sessions were just created here: no need for submit to read each one first.
        waiting.append(flowcore_celery.submit(app, session_id, check=False))
        if len(waiting) >= in_flight:
            collect(waiting.popleft())
    while waiting:
        collect(waiting.popleft())
    return totals


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run many invoice sessions on Celery workers.")
    parser.add_argument("--sessions", type=positive, default=10_000, metavar="N")
    parser.add_argument("--in-flight", type=positive, default=1_000, metavar="N")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    prefix = f"celery-batch-{uuid.uuid4().hex[:8]}"  # a second run in the same storage adds its own
    ids = [(f"{prefix}-{number}", number) for number in range(args.sessions)]
    try:
        asyncio.run(create_sessions(STORAGE, ids, at_once=16))
        started = time.perf_counter()
        totals = drive_all(
            (session_id for session_id, _ in ids),
            in_flight=args.in_flight,
            progress=Progress(args.sessions),
        )
        elapsed = time.perf_counter() - started
    except KeyboardInterrupt:
        return 130
    except (GraphError, ConnectionError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{totals.sessions:,} sessions completed by the workers: "
        f"{totals.outcomes['approved']:,} approved, {totals.outcomes['review']:,} sent for review"
    )
    print(speed(totals, elapsed, STORAGE, args.in_flight).replace("at a time", "in flight"))
    return 0 if totals.sessions == args.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
