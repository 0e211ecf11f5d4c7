"""flowcore beside LangGraph, Apache Burr and pydantic-graph, on the same workloads.

    make bench-peers                                   # installs the peers, then runs this
    build/peers-venv/bin/python benchmarks/peers/run.py [--rounds N] [--quick]

The workloads (what each library does for them is in its ``with_*.py`` module):

- one step per request: one call that advances a stored run by one task and returns, with the
  run kept in memory, in SQLite (a file in a temporary directory) and in PostgreSQL (each
  library's tables in a schema of this run's own, dropped at the end), where the library has
  such a store;
- a whole 3-task run: create a fresh run and take it to its end, in memory;
- and the hot-path benchmark's reference kernel, in plain Python: how fast the machine ran.

Each task sets one key of the state. Rounds are interleaved: each round runs every case once,
in a shuffled order, a fresh run each time, timing a number of operations fixed per case by a
calibration beforehand (about ``--seconds`` each). A figure is the median over the rounds of
the time per operation. Prints the table and writes ``build/peers.md`` and ``build/peers.json``.
A library that is not installed, or a PostgreSQL server that does not answer, skips its cells
with the reason, so the script also runs in flowcore's own virtualenv (flowcore's rows only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import sys
import tempfile
import uuid
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent.parent
# Run as a script: let it import benchmarks.*, after site-packages, so that flowcore is the
# installed one (in build/peers-venv, what users get from `pip install .`), not the checkout's.
sys.path.append(str(ROOT))

from benchmarks.peers import (  # noqa: E402
    harness,
    with_burr,
    with_flowcore,
    with_langgraph,
    with_pydantic_graph,
)

LIBRARIES = (with_flowcore, with_langgraph, with_burr, with_pydantic_graph)
PACKAGES = (
    "flowcore",
    "flowcore-sql",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "psycopg",
    "apache-burr",
    "psycopg2-binary",
    "pydantic-graph",
)
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def installed_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


async def _postgres(url: str, schema: str, create: bool) -> None:
    import asyncpg  # flowcore-sql's driver

    connection = await asyncpg.connect(url, timeout=3)
    try:
        if create:
            await connection.execute(f'CREATE SCHEMA "{schema}"')
        else:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def open_postgres(url: str) -> tuple[dict[str, str] | None, str]:
    """A schema of this run's own on the server at ``url``, or None and why not."""
    schema = f"flowcore_peers_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(_postgres(url, schema, create=True))
    except ImportError:
        return None, "asyncpg (from flowcore-sql) is not installed"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return {"url": url, "schema": schema}, ""


def shown(url: str) -> str:
    """``url`` without its password, to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.3,
        help="about how long each case runs in each round (default 0.3)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 round of a few operations per case"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOWCORE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server (default: $FLOWCORE_TEST_POSTGRES_URL, else the local one)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="where the table goes")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only the cases whose workload, library or store contains TEXT (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 0.002
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    postgres, why_not = open_postgres(args.postgres_url)
    if postgres is None:
        print(f"PostgreSQL cells skipped: no server at {shown(args.postgres_url)} ({why_not})")
    cases: list[harness.Case] = []
    skipped: list[harness.Skipped] = []
    try:
        with tempfile.TemporaryDirectory(prefix="flowcore-peers-") as sqlite_dir:
            try:
                for library in LIBRARIES:
                    found, missed = library.cases(sqlite_dir, postgres)
                    cases += found
                    skipped += missed
                if args.only:
                    chosen = [c for c in cases if any(text in c.key for text in args.only)]
                    for case in cases:
                        if case not in chosen:
                            case.close()
                    cases = chosen
                    skipped = [
                        cell
                        for cell in skipped
                        if any(text in f"{cell.workload} | {cell.library}" for text in args.only)
                    ]
                for cell in skipped:
                    print(f"skipped: {cell.library}, {cell.workload}: {cell.reason}")
                harness.measure(
                    cases,
                    rounds=args.rounds,
                    seconds=args.seconds,
                    cap=30 if args.quick else 30_000,
                    seed=args.seed,
                    progress=print,
                )
            finally:
                for case in cases:
                    case.close()
    finally:
        if postgres is not None:
            asyncio.run(_postgres(postgres["url"], postgres["schema"], create=False))

    table = harness.rows(cases)
    about: dict[str, Any] = {
        "date": date.today().isoformat(),
        "command": shlex.join(
            ["benchmarks/peers/run.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "cpus": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rounds": args.rounds,
        "seconds_per_case": args.seconds,
        "versions": installed_versions(),
    }
    markdown, data = harness.write_report(args.out, table, skipped, about)
    print()
    print(harness.markdown_table(table, skipped))
    print(f"written: {markdown}, {data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
