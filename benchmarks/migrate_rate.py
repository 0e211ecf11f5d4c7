"""How fast ``flowcore sessions migrate`` brings a stored population up to a new graph version.

    python benchmarks/migrate_rate.py --storage sqlite:///build/migrate.db --sessions 100000
    python benchmarks/migrate_rate.py \
        --storage 'postgresql://postgres@127.0.0.1:5432/test?schema=migrate_bench'

Fills the storage with ``--sessions`` sessions of version 1 of a 3-task graph (each stepped once,
with a small context), then times the command's own function migrating them to version 2 (a task
renamed, a key moved), and prints sessions per second. Every session the storage holds is
deleted first: give it a database or a schema of its own, and drop it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
from contextlib import redirect_stdout

os.environ.setdefault("FLOWCORE_LOAD_PLUGINS", "sql,redis")

from flowcore import Graph, NextAction, Session, TaskResult, open_storage, task
from flowcore._cli.sessions_migrate import sessions_migrate_command
from flowcore.codec import encode_session


def hop(task_id: str, action: NextAction = NextAction.Continue):  # type: ignore[no-untyped-def]
    @task(task_id)
    def run(ctx):  # type: ignore[no-untyped-def]
        return TaskResult(None, action)

    return run


def rename(session: Session) -> None:
    session.current_task_id = {"review": "assess"}.get(
        session.current_task_id, session.current_task_id
    )
    session.history = ["assess" if t == "review" else t for t in session.history]
    session.context.set("claim", {"amount": session.context.remove("amount")})


def v2() -> Graph:
    graph = Graph("claims", version=2)
    graph.add_task(hop("intake")).add_task(hop("assess")).add_task(hop("done", NextAction.End))
    graph.add_edge("intake", "assess").add_edge("assess", "done")
    return graph.add_migration(1, rename)


async def fill(url: str, count: int) -> None:
    async with open_storage(url) as storage:
        for session_id in await storage.list_sessions():
            await storage.delete(session_id)
        template = Session.new_from_task("x", "review", graph_id="claims")
        template.history = ["intake"]
        template.graph_version = 1
        for start in range(0, count, 200):
            batch = []
            for i in range(start, min(start + 200, count)):
                session = Session.new_from_task(f"claim-{i:07}", "review", graph_id="claims")
                session.history = ["intake"]
                session.context.update({"amount": i, "customer": f"c-{i % 977}", "tags": ["car"]})
                batch.append(session)
            await asyncio.gather(*(storage.save(s) for s in batch))
        print(f"stored {count:,} sessions at version 1 ({len(encode_session(batch[0]))} B each)")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True, metavar="URL")
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    started = time.perf_counter()
    await fill(args.storage, args.sessions)
    print(f"filled in {time.perf_counter() - started:.1f} s")
    out = io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out):
        status = await sessions_migrate_command(
            args.storage, v2(), dry_run=False, batch=args.batch, progress=io.StringIO()
        )
    seconds = time.perf_counter() - started
    print(out.getvalue(), end="")
    rate = args.sessions / seconds
    print(f"{args.sessions:,} sessions in {seconds:.1f} s: {rate:,.0f} per second")
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
