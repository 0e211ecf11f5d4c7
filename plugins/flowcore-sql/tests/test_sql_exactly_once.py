"""Exactly-once steps on a real database: duplicates of one request, in one process and across
processes, apply the step once, and every caller gets the same result with no error."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sql_backends import Backend

from flowcore import (
    Context,
    ExecutionStatus,
    FlowRunner,
    GraphBuilder,
    NextAction,
    SessionMoved,
    TaskResult,
    task,
)

# The workflow of every test here, also written out for the worker processes.
WORKFLOW = """
import asyncio
from flowcore import Context, GraphBuilder, NextAction, TaskResult, task

@task("answer")
async def answer(ctx: Context) -> TaskResult:
    await asyncio.sleep(0.02)  # every duplicate loads the session before any saves it
    ctx.set("applied", ctx.get("applied", 0) + 1)
    ctx.set("answer", ctx.remove("reply"))
    return TaskResult("Thanks: " + str(ctx.get("answer")), NextAction.Continue)

@task("next_question")
def next_question(ctx: Context) -> TaskResult:
    ctx.set("next_answer", ctx.remove("reply"))
    return TaskResult("Did that help?", NextAction.WaitForInput)

GRAPH = (
    GraphBuilder("survey").add_task(answer).add_task(next_question)
    .add_edge("answer", "next_question").build()
)
"""

WORKER = (
    WORKFLOW
    + """
import json, sys, time
from flowcore import FlowRunner, open_storage

async def main(url: str, start_at: float, copies: int) -> None:
    async with open_storage(url) as storage:
        runner = FlowRunner(GRAPH, storage)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        outcomes = await asyncio.gather(
            *(
                runner.run("survey", context_updates={"reply": "yes"}, request_id="req-1")
                for _ in range(copies)
            ),
            return_exceptions=True,
        )
    print(json.dumps([
        repr(o) if isinstance(o, BaseException) else
        [o.response, repr(o.status), o.version, o.current_task_id, o.replayed,
         [t.task_id for t in o.tasks]]
        for o in outcomes
    ]))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""
)

namespace: dict[str, object] = {}
exec(compile(WORKFLOW, "workflow", "exec"), namespace)  # our own source, above
GRAPH = namespace["GRAPH"]


def url_of(backend: Backend) -> str:
    if backend.name == "sqlite":
        return backend.url
    return f"{backend.url}?schema={backend.schema}"


async def assert_applied_once(backend: Backend) -> None:
    storage = await backend.open()
    stored = await storage.get("survey")
    assert stored is not None
    assert (stored.version, stored.current_task_id) == (2, "next_question")
    assert stored.context.get("applied") == 1
    assert stored.context.get("answer") == "yes"
    assert stored.context.get("next_answer") is None  # the duplicates answered nothing else


async def test_20_concurrent_duplicates_in_one_process_apply_once(backend: Backend) -> None:
    storages = [await backend.open() for _ in range(4)]
    runners = [FlowRunner(GRAPH, storages[i % 4]) for i in range(20)]  # type: ignore[arg-type]
    await runners[0].create_session("survey")

    results = await asyncio.gather(
        *(r.run("survey", context_updates={"reply": "yes"}, request_id="req-1") for r in runners)
    )

    assert all(r == results[0] for r in results)
    assert results[0].response == "Thanks: yes"
    assert {(r.version, r.current_task_id) for r in results} == {(2, "next_question")}
    assert [r.replayed for r in results].count(False) == 1
    await assert_applied_once(backend)


async def test_20_duplicates_across_4_processes_apply_once(
    backend: Backend, tmp_path: Path
) -> None:
    runner = FlowRunner(GRAPH, await backend.open())  # type: ignore[arg-type]
    await runner.create_session("survey")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER), "utf-8")
    start_at = time.time() + 3.0  # all four are up and connected by then
    # The workers load the SQL plugin whatever plugins the test run restricts itself to.
    env = {**os.environ, "FLOWCORE_LOAD_PLUGINS": "sql"}
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            url_of(backend),
            str(start_at),
            "5",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(worker.communicate() for worker in workers)), 120
    )

    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()
    results = [result for out, _err in outputs for result in json.loads(out)]
    assert len(results) == 20
    errors = [r for r in results if isinstance(r, str)]
    assert errors == []
    assert {tuple(r[:4]) for r in results} == {
        (
            "Thanks: yes",
            "ExecutionStatus.Paused(next_task_id='next_question', "
            "reason='Task completed, continuing to next task')",
            2,
            "next_question",
        )
    }
    assert {tuple(r[5]) for r in results} == {("answer",)}
    assert [r[4] for r in results].count(False) == 1  # one ran it; 19 were answered
    await assert_applied_once(backend)


async def test_an_answer_to_a_question_already_answered_is_refused(backend: Backend) -> None:
    runner = FlowRunner(GRAPH, await backend.open())  # type: ignore[arg-type]
    await runner.create_session("survey")
    await runner.run("survey", context_updates={"reply": "yes"}, expect_task="answer")

    with pytest.raises(SessionMoved, match="is at task 'next_question', not at task 'answer'"):
        await runner.run("survey", context_updates={"reply": "yes"}, expect_task="answer")

    await assert_applied_once(backend)


async def test_a_timer_survives_storage_and_holds_the_session(backend: Backend) -> None:
    from datetime import timedelta

    @task("wait")
    def wait(ctx: Context) -> TaskResult:
        return TaskResult("see you tomorrow", NextAction.WaitUntil(timedelta(days=1)))

    @task("remind")
    def remind(ctx: Context) -> TaskResult:
        return TaskResult("reminder", NextAction.End)

    graph = GraphBuilder("timer").add_task(wait).add_task(remind).add_edge("wait", "remind").build()
    runner = FlowRunner(graph, await backend.open())
    await runner.create_session("t")

    scheduled = await runner.run("t")
    held = await runner.run("t")

    match scheduled.status:
        case ExecutionStatus.Scheduled(next_task_id="remind", wake_at=wake_at):
            pass
        case _:
            pytest.fail(f"not Scheduled: {scheduled.status!r}")
    assert held.status == scheduled.status
    stored = await runner.storage.get("t")
    assert stored is not None
    assert (stored.version, stored.wake_at) == (2, wake_at)
