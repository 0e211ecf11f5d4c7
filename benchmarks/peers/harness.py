"""Rounds, medians and the table of ``make bench-peers``: nothing here imports a peer library.

A *case* is one library doing one workload. Each round runs every case once, in an order
shuffled anew for the round, so that whatever else the machine does at a given moment falls on
all libraries alike; a case's figure is the median over the rounds of its time per operation.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The workloads, in the order the table shows them.
WORKLOADS = {
    "step-memory": "one step per request, in memory",
    "step-sqlite": "one step per request, SQLite",
    "step-postgres": "one step per request, PostgreSQL",
    "whole-run": "a whole 3-task run, in memory",
    "reference": "reference kernel: the machine's speed",
}


@dataclass
class Case:
    """One library doing one workload.

    ``start`` makes a fresh run for a round and checks, untimed, that one operation does what the
    workload says; ``run(n)`` performs ``n`` operations and returns the seconds they took;
    ``close`` releases what the case holds. The ``baseline`` case of a workload is the one the
    others' ratios are taken to.
    """

    workload: str
    library: str
    version: str
    how: str
    start: Callable[[], None]
    run: Callable[[int], float]
    close: Callable[[], None] = lambda: None
    baseline: bool = False
    ops: int = 0
    samples: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.workload} | {self.library} | {self.how}"


@dataclass
class Skipped:
    """A cell not measured, and why (a library not installed, a server not running)."""

    workload: str
    library: str
    reason: str


def calibrate(case: Case, seconds: float, cap: int) -> int:
    """How many operations, a multiple of 3 (whole turns of the 3-task cycle), take ``seconds``."""
    case.start()
    n = 3
    while True:
        took = case.run(n)
        if took >= min(0.02, seconds / 2) or n >= cap:
            break
        n *= 4
    per_op = took / n
    ops = min(cap, int(seconds / per_op) if per_op > 0 else cap)
    return max(3, ops - ops % 3)


def measure(
    cases: Sequence[Case],
    *,
    rounds: int,
    seconds: float,
    cap: int = 30_000,
    seed: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> None:
    """Calibrate each case once, then run ``rounds`` interleaved rounds, filling ``samples``."""
    shuffle = random.Random(seed).shuffle
    for case in cases:
        case.ops = calibrate(case, seconds, cap)
        progress(f"calibrated {case.key}: {case.ops} operations a round")
    order = list(cases)
    for round_number in range(1, rounds + 1):
        shuffle(order)
        started = time.perf_counter()
        for case in order:
            case.start()
            case.samples.append(case.run(case.ops) / case.ops)
        progress(f"round {round_number}/{rounds}: {time.perf_counter() - started:.1f} s")


def median_us(case: Case) -> float:
    return statistics.median(case.samples) * 1e6


def rows(cases: Sequence[Case]) -> list[dict[str, Any]]:
    """One row per measured case, by workload, then fastest first; ratios to the baseline."""
    out = []
    for workload in WORKLOADS:
        mine = [case for case in cases if case.workload == workload and case.samples]
        base = next((case for case in mine if case.baseline), None)
        for case in sorted(mine, key=median_us):
            out.append(
                {
                    "workload": workload,
                    "library": case.library,
                    "version": case.version,
                    "how": case.how,
                    "median_us": median_us(case),
                    "min_us": min(case.samples) * 1e6,
                    "max_us": max(case.samples) * 1e6,
                    "rounds_us": [sample * 1e6 for sample in case.samples],
                    "ops_per_round": case.ops,
                    "ratio": median_us(case) / median_us(base) if base else None,
                }
            )
    return out


def figure(value: float) -> str:
    """µs or a ratio to the precision a noisy median deserves: three significant digits,
    thousands split (1.07, 26.8, 112, 1,234)."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(table: Sequence[dict[str, Any]], skipped: Sequence[Skipped] = ()) -> str:
    """The rows by workload, each workload's cells not measured after its measured ones."""
    lines = [
        "| Workload | Library | How | Median µs | Min / max over rounds | vs flowcore |",
        "|---|---|---|---:|---:|---:|",
    ]
    for workload, title in WORKLOADS.items():
        cells = []
        for row in table:
            if row["workload"] == workload:
                ratio = "" if row["ratio"] is None else f"{figure(row['ratio'])}x"
                spread = f"{figure(row['min_us'])} / {figure(row['max_us'])}"
                cells.append(
                    f"| {row['library']} {row['version']} | {row['how']} "
                    f"| {figure(row['median_us'])} | {spread} | {ratio} |"
                )
        for cell in skipped:
            if cell.workload == workload:
                cells.append(f"| {cell.library} | not measured: {cell.reason} | | | |")
        lines += [f"| {title if i == 0 else ''} {cell}" for i, cell in enumerate(cells)]
    return "\n".join(lines) + "\n"


def write_report(
    directory: Path,
    table: Sequence[dict[str, Any]],
    skipped: Sequence[Skipped],
    about: dict[str, Any],
) -> tuple[Path, Path]:
    """``peers.md`` (what was run, then the table) and ``peers.json`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    heading = [
        "# flowcore beside other libraries",
        "",
        f"Date: {about['date']}. Command: `{about['command']}`. "
        f"Machine: {about['cpus']} CPUs, {about['python']}, {about['platform']}; "
        "load average (1 min) before and after: {} and {}.".format(*about["load_average"]),
        f"Rounds: {about['rounds']}, interleaved (every case once a round, in shuffled order); "
        "medians of the per-operation time over the rounds.",
        "",
        "Versions: "
        + ", ".join(f"{name} {version}" for name, version in about["versions"].items())
        + ".",
        "",
        "",
    ]
    markdown = directory / "peers.md"
    markdown.write_text("\n".join(heading) + markdown_table(table, skipped))
    report = {
        **about,
        "rows": list(table),
        "skipped": [vars(cell) for cell in skipped],
    }
    data = directory / "peers.json"
    data.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return markdown, data
