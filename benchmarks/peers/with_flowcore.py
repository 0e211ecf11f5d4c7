"""flowcore's cases: the workloads every other library is compared with.

One step per request is ``await runner.run(session_id)`` on a ring of 3 tasks, each setting the
key ``last`` and moving on (``NextAction.Continue``): load the session, run one task, pick the
next, save. The same step as the hot-path benchmark's (``benchmarks/workloads.py``).
A whole run is ``create_session`` then one ``run`` through 3 tasks chained with
``ContinueAndExecute``, the last ending the session.
"""

from __future__ import annotations

import platform
import time
import uuid
from typing import Any

import flowcore as fc
from benchmarks.peers.harness import Case, Skipped
from benchmarks.peers.timing import Loop
from benchmarks.workloads import cycle_graph, hop_tasks, reference_kernel

LIBRARY = "flowcore"
VERSION = f"{fc.__version__} ({'compiled' if fc.COMPILED else 'pure Python'})"


def _step_case(workload: str, how: str, storage: Any, loop: Loop, baseline: bool) -> Case:
    runner = fc.FlowRunner(cycle_graph(fc, 3, hop_tasks(fc).sync), storage)
    current: dict[str, str] = {}

    async def start() -> None:
        session_id = uuid.uuid4().hex
        await runner.create_session(session_id, context={"last": None})
        for _ in range(3):
            await runner.run(session_id)
        session = await storage.get(session_id)
        assert session.current_task_id == "t0", session.current_task_id
        assert session.context.get("last") == "t2", session.context.get("last")
        current["id"] = session_id

    async def step() -> None:
        await runner.run(current["id"])

    async def close() -> None:
        await storage.close()

    return Case(
        workload,
        LIBRARY,
        VERSION,
        how,
        start=lambda: loop.call(start()),
        run=loop.timed(step),
        close=lambda: (loop.call(close()), loop.close()),
        baseline=baseline,
    )


def _whole_run_case() -> Case:
    loop = Loop()
    tasks = hop_tasks(fc)
    graph = (
        fc.GraphBuilder("line")
        .add_task(tasks.sync("t0", fc.NextAction.ContinueAndExecute))
        .add_task(tasks.sync("t1", fc.NextAction.ContinueAndExecute))
        .add_task(tasks.sync("t2", fc.NextAction.End))
        .add_edge("t0", "t1")
        .add_edge("t1", "t2")
        .build()
    )
    holder: dict[str, Any] = {}

    async def start() -> None:
        holder["runner"] = runner = fc.FlowRunner(graph, fc.InMemorySessionStorage())
        session = await runner.create_session(context={"last": None})
        result = await runner.run(session.id)
        assert result.status == fc.ExecutionStatus.Completed, result.status
        assert [record.task_id for record in result.tasks] == ["t0", "t1", "t2"]

    async def whole_run() -> None:
        runner = holder["runner"]
        session = await runner.create_session(context={"last": None})
        await runner.run(session.id)

    return Case(
        "whole-run",
        LIBRARY,
        VERSION,
        "`create_session` + one `run` through a `ContinueAndExecute` chain",
        start=lambda: loop.call(start()),
        run=loop.timed(whole_run),
        close=loop.close,
        baseline=True,
    )


def _reference_case() -> Case:
    """The hot-path benchmark's reference kernel: a plain-Python loop doing the least a step
    must do. Not a library: it says how fast the machine ran, so that runs can be compared."""

    def run(n: int) -> float:
        stepper = reference_kernel(n)
        try:
            started = time.perf_counter()
            stepper()
            return time.perf_counter() - started
        finally:
            stepper.close()

    return Case(
        "reference",
        "plain Python",
        platform.python_version(),
        "`reference_kernel` of benchmarks/workloads.py",
        start=lambda: None,
        run=run,
    )


def memory_cases() -> list[Case]:
    storage = fc.InMemorySessionStorage()
    how = "`InMemorySessionStorage`"
    return [
        _step_case("step-memory", how, storage, Loop(), True),
        _whole_run_case(),
        _reference_case(),
    ]


def cases(sqlite_dir: str, postgres: dict[str, str] | None) -> tuple[list[Case], list[Skipped]]:
    out = memory_cases()
    skipped = []
    try:
        import flowcore_sql  # noqa: F401  (open_storage finds the SQL schemes through it)
    except ImportError:
        reason = "flowcore-sql is not installed"
        skipped += [Skipped(w, LIBRARY, reason) for w in ("step-sqlite", "step-postgres")]
        return out, skipped
    for synchronous, baseline in (("NORMAL", True), ("FULL", False)):
        url = f"sqlite:///{sqlite_dir}/flowcore-{synchronous.lower()}.db"
        how = f"flowcore-sql, WAL, `synchronous={synchronous}`"
        if baseline:
            how += " (its default)"
        storage = fc.open_storage(url, synchronous=synchronous)
        out.append(_step_case("step-sqlite", how, storage, Loop(), baseline))
    if postgres is None:
        skipped.append(Skipped("step-postgres", LIBRARY, "PostgreSQL is not reachable"))
    else:
        storage = fc.open_storage(postgres["url"], schema=postgres["schema"])
        how = "flowcore-sql on asyncpg"
        out.append(_step_case("step-postgres", how, storage, Loop(), True))
    return out, skipped
