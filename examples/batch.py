"""A batch job on flowcore: many sessions run to completion, a bounded number at a time.

    python examples/batch.py                                  # 10,000 invoices, 100 at a time
    python examples/batch.py --sessions 2000 --concurrency 20 \
        --storage 'sqlite:///.flowcore/batch.db?create_dirs=true'

Each session is an invoice going through ``extract`` -> ``check_vendor`` -> ``approve`` or
``review`` -> ``archive``; each ``runner.run`` call is one step. ``--concurrency`` workers take
the invoices one after another, so no more than that many sessions are in flight, however many
there are. A progress bar goes to stderr; the summary, with the steps per second, to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

from flowcore import (
    ExecutionStatus,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    NextAction,
    TaskResult,
    hide_password,
    open_storage,
    task,
)

__all__ = ["Progress", "Totals", "build_graph", "invoice", "main", "run_batch", "speed"]

REVIEW_ABOVE = Decimal("1000")


@task("extract")
def extract(ctx):
    total = sum(Decimal(qty) * Decimal(price) for qty, price in ctx.get("lines"))
    ctx.set("total", total)
    return TaskResult(f"total {total}", NextAction.Continue)


@task("check_vendor")
async def check_vendor(ctx):
    await asyncio.sleep(0)  # where a real job would call the vendor registry
    ctx.set("vendor_ok", not ctx.get("vendor").startswith("X"))
    return TaskResult.move_to_next()


def needs_review(ctx):
    return ctx.get("total") > REVIEW_ABOVE or not ctx.get("vendor_ok")


@task("approve")
def approve(ctx):
    ctx.set("outcome", "approved")
    return TaskResult.move_to_next()


@task("review")
def review(ctx):
    ctx.set("outcome", "review")
    return TaskResult.move_to_next()


@task("archive")
def archive(ctx):
    return TaskResult(ctx.get("outcome"), NextAction.End)


def build_graph() -> Graph:
    return (
        GraphBuilder("invoices")
        .add_task(extract)
        .add_task(check_vendor)
        .add_task(approve)
        .add_task(review)
        .add_task(archive)
        .add_edge("extract", "check_vendor")
        .add_conditional_edge("check_vendor", needs_review, "review", "approve")
        .add_edge("approve", "archive")
        .add_edge("review", "archive")
        .build()
    )


def invoice(number: int) -> dict[str, object]:
    """The context of invoice ``number``: made up, but the same on every run."""
    return {
        "vendor": ("ACME", "Globex", "Initech", "Xyloph")[number % 4],
        "lines": [(1 + number % 3, f"{(number * 37) % 500}.{number % 100:02d}")],
    }


@dataclass
class Totals:
    sessions: int = 0
    steps: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)


class Progress:
    """A progress bar on a terminal; on anything else, one line every tenth of the way."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.total = total
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self.shown_at = 0.0
        self.tenths_shown = 0

    def update(self, done: int, steps: int) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self.shown_at >= 0.1 or done == self.total:
                self.shown_at = now
                self.stream.write("\r" + self.line(done, steps, now))
                if done == self.total:
                    self.stream.write("\n")
                self.stream.flush()
        elif done * 10 >= (self.tenths_shown + 1) * self.total:
            self.tenths_shown = done * 10 // self.total
            self.stream.write(self.line(done, steps, now) + "\n")
            self.stream.flush()

    def line(self, done: int, steps: int, now: float) -> str:
        filled = self.width * done // self.total
        rate = steps / max(now - self.started, 1e-9)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {done:,}/{self.total:,} sessions  {rate:,.0f} steps/s"


async def run_batch(
    runner: FlowRunner,
    numbers: Iterator[int],
    *,
    concurrency: int,
    prefix: str = "invoice",
    progress: Progress | None = None,
) -> Totals:
    """Create a session ``<prefix>-<number>`` for each invoice number and run it to completion,
    ``concurrency`` sessions at a time."""
    totals = Totals()

    async def worker() -> None:
        for number in numbers:  # shared: each number goes to one worker
            session = await runner.create_session(f"{prefix}-{number}", context=invoice(number))
            while True:
                result = await runner.run(session.id)
                totals.steps += 1
                if result.status == ExecutionStatus.Completed:
                    break
                if not isinstance(result.status, ExecutionStatus.Paused):
                    raise RuntimeError(f"invoice {number} stopped: {result.status}")
            totals.sessions += 1
            totals.outcomes[result.response or "?"] += 1
            if progress is not None:
                progress.update(totals.sessions, totals.steps)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return totals


async def amain(args: argparse.Namespace) -> int:
    async with open_storage(args.storage) as storage:
        runner = FlowRunner(build_graph(), storage)
        progress = Progress(args.sessions)
        started = time.perf_counter()
        totals = await run_batch(
            runner,
            iter(range(args.sessions)),
            concurrency=args.concurrency,
            prefix=f"batch-{uuid.uuid4().hex[:8]}",  # a second run in the same storage adds its own
            progress=progress,
        )
        elapsed = time.perf_counter() - started
    print(
        f"{totals.sessions:,} sessions completed: {totals.outcomes['approved']:,} approved, "
        f"{totals.outcomes['review']:,} sent for review"
    )
    print(speed(totals, elapsed, args.storage, args.concurrency))
    return 0 if totals.sessions == args.sessions else 1


def speed(totals: Totals, elapsed: float, storage_url: str, concurrency: int) -> str:
    """The line that says how fast the batch ran (the URL's password, if any, hidden)."""
    return (
        f"{totals.steps:,} steps in {elapsed:.2f} s: {totals.steps / elapsed:,.0f} steps/s "
        f"(storage {hide_password(storage_url)}, {concurrency} at a time)"
    )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run many invoice sessions to completion.")
    parser.add_argument("--sessions", type=positive, default=10_000, metavar="N")
    parser.add_argument("--concurrency", type=positive, default=100, metavar="N")
    parser.add_argument("--storage", default="memory://", metavar="URL", help="default: memory://")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130
    except GraphError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
