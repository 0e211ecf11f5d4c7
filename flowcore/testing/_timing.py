"""Timing in interleaved rounds, the reference kernel, and baselines of same-run ratios.

One machinery for every benchmark gate of flowcore's: the ``flowcore_bench`` fixture, the
``StorageBenchmark`` suite and flowcore's own CI gate (``benchmarks/gate.py``).

A figure alone says little on a shared machine: a busy neighbour, a slower host or a frequency
change moves it by tens of percent. So every workload is timed beside a *reference* in the same
process and in interleaved rounds (round 1 of each, then round 2 of each, ...), and the gate
compares their ratio: the ratio of each workload's fastest round (see ``ratio``), which is what
a baseline records. Interleaving puts every workload's rounds under the same spells of noise.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASELINE_FORMAT",
    "Regression",
    "Rounds",
    "describe",
    "interleave",
    "load_baseline",
    "ratio",
    "reference_kernel",
    "regressions",
    "save_baseline",
]

BASELINE_FORMAT = "flowcore-bench-baseline/1"
"""The ``format`` field of a baseline file written by ``save_baseline``."""

REFERENCE_OPS = 2000
"""Operations per round of the reference kernel: about 0.3 ms on a 2-vCPU machine."""


@dataclass
class Rounds:
    """The seconds per operation of one workload, one figure per round, in round order."""

    name: str
    per_op: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.per_op)

    @property
    def min(self) -> float:
        return min(self.per_op)


def interleave(
    workloads: Mapping[str, tuple[Callable[[], object], int]],
    rounds: int,
    warmup: int = 1,
) -> dict[str, Rounds]:
    """Time each workload once per round, the workloads one after another, for ``rounds`` rounds.

    ``workloads`` maps a name to ``(run_one_round, operations_per_round)``. The order within a
    round turns by one each round, so that no workload always runs first or last. ``warmup``
    rounds run first and are not kept.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds!r}")
    names = list(workloads)
    out = {name: Rounds(name) for name in names}
    clock = time.perf_counter
    for number in range(warmup + rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            run, ops = workloads[name]
            start = clock()
            run()
            elapsed = clock() - start
            if number >= warmup:
                out[name].per_op.append(elapsed / ops)
    return out


def ratio(numerator: Rounds, denominator: Rounds) -> float:
    """``numerator.min / denominator.min``: the ratio of their fastest rounds.

    A busy machine adds time to a round, never takes it away, and it does not slow every
    workload alike (a step that allocates and copies suffers more from a busy neighbour than a
    small loop that stays in the cache). Over interleaved rounds, each workload's fastest round
    is the one the machine disturbed least, and those are the figures comparable across runs.
    """
    if not numerator.per_op or not denominator.per_op:
        raise ValueError(
            f"{numerator.name!r} and {denominator.name!r} need at least one round each"
        )
    return numerator.min / denominator.min


async def _kernel(ops: int, sessions: dict[str, dict[str, Any]]) -> None:
    edges = {"t0": "t1", "t1": "t2", "t2": "t0"}

    async def trivial(data: dict[str, Any]) -> None:
        data["last"] = 1

    for _ in range(ops):
        session = sessions["s"]
        await trivial(session["data"])
        session["task"] = edges[session["task"]]
        sessions["s"] = session


def reference_kernel(
    loop: asyncio.AbstractEventLoop, ops: int = REFERENCE_OPS
) -> tuple[Callable[[], None], int]:
    """A round of the least a step must do, in plain Python, run on ``loop``.

    Each operation looks up a session in a dict, awaits a trivial coroutine that sets a key,
    picks the next task from a dict and stores the session back. It does not change between
    flowcore releases, so a ratio to it survives a slower or a faster machine. Returns
    ``(run_one_round, ops)`` for ``interleave``.
    """
    sessions: dict[str, dict[str, Any]] = {"s": {"task": "t0", "data": {"k": 1}}}

    def run() -> None:
        loop.run_until_complete(_kernel(ops, sessions))

    return run, ops


@dataclass(frozen=True)
class Regression:
    """A ratio found more than the tolerance above its baseline."""

    name: str
    ratio: float
    baseline: float
    tolerance: float

    def __str__(self) -> str:
        return (
            f"{self.name}: ratio {self.ratio:.3g} is more than {self.tolerance:.0%} above its "
            f"baseline {self.baseline:.3g} (limit {self.baseline * (1 + self.tolerance):.3g})"
        )


def regressions(
    found: Mapping[str, float], baseline: Mapping[str, float], tolerance: float
) -> list[Regression]:
    """The ratios of ``found`` more than ``tolerance`` above the same name in ``baseline``.

    A name missing from either side is no regression (a new benchmark has no baseline yet).
    """
    return [
        Regression(name, ratio, baseline[name], tolerance)
        for name, ratio in found.items()
        if name in baseline and ratio > baseline[name] * (1 + tolerance)
    ]


def save_baseline(path: str | Path, ratios: Mapping[str, float], **info: Any) -> None:
    """Write ``ratios`` (name -> ratio) as a baseline file, with ``info`` kept beside them."""
    document = {"format": BASELINE_FORMAT, **info, "ratios": dict(sorted(ratios.items()))}
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def load_baseline(path: str | Path) -> dict[str, float]:
    """The ratios of a baseline file; ValueError naming the file and what is wrong with it."""
    where = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"no benchmark baseline at {where!r}: record one with --flowcore-save-baseline"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the benchmark baseline {where!r}: {exc}") from None
    ratios = document.get("ratios") if isinstance(document, dict) else None
    if not isinstance(ratios, dict):
        raise ValueError(
            f"{where!r} is not a benchmark baseline: it has no 'ratios' object "
            "(write one with --flowcore-save-baseline)"
        )
    for name, value in ratios.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(
                f"{where!r}: the ratio of {name!r} is {value!r}, not a positive number"
            )
        if math.isinf(value):
            raise ValueError(f"{where!r}: the ratio of {name!r} is infinite")
    return {str(name): float(value) for name, value in ratios.items()}


def describe(rounds: Sequence[Rounds]) -> str:
    """A small table of µs per operation (median and minimum), one line per workload."""
    lines = [f"  {'µs per operation':44s} {'median':>10s} {'min':>10s}"]
    for r in rounds:
        lines.append(f"  {r.name:44s} {r.median * 1e6:10.3f} {r.min * 1e6:10.3f}")
    return "\n".join(lines)
