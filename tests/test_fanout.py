"""FanOutTask: children on one context, concurrently when async."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowcore import (
    Context,
    ExecutionStatus,
    FanOutTask,
    NextAction,
    Task,
    TaskExecutionFailed,
    TaskResult,
    task,
)

from .helpers import graph_of, runner_for


class Sleeps(Task):
    def __init__(self, id: str, seconds: float = 0.1, action=NextAction.Continue, status=None):
        self.id = id
        self.seconds = seconds
        self.action = action
        self.status = status

    async def run(self, ctx: Context) -> TaskResult:
        await asyncio.sleep(self.seconds)
        ctx.set(f"{self.id}.ran", True)
        return TaskResult(f"{self.id} ok", self.action, self.status)


@pytest.mark.slow
async def test_async_children_run_concurrently():
    fan = FanOutTask("checks", [Sleeps("fraud"), Sleeps("coverage")])
    runner = runner_for(graph_of(fan))
    session = await runner.create_session()

    started = time.monotonic()
    result = await runner.run(session.id)
    elapsed = time.monotonic() - started

    assert 0.09 < elapsed < 0.19  # two 100 ms children take about 100 ms, not 200
    assert result.response == "FanOutTask 'checks' completed 2 child task(s)"
    assert result.status.next_task_id == "checks"  # no edge: stays


async def test_keys_written_for_each_child():
    fan = FanOutTask(
        "checks",
        [
            Sleeps("fraud", 0, NextAction.End, status="clean"),
            Sleeps("coverage", 0, NextAction.GoTo("x")),
        ],
        prefix="check",
        next_action=NextAction.WaitForInput,
    )
    runner = runner_for(graph_of(fan))
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.status == ExecutionStatus.WaitingForInput
    data = (await runner.storage.get(session.id)).context.to_dict()
    assert data == {
        "fraud.ran": True,
        "coverage.ran": True,
        "check.fraud.response": "fraud ok",
        "check.fraud.status": "clean",
        "check.fraud.next_action": "End",
        "check.coverage.response": "coverage ok",
        "check.coverage.next_action": "GoTo(x)",
    }
    stored = await runner.storage.get(session.id)
    assert stored.status_message == "FanOutTask 'checks' completed 2 child task(s)"


async def test_plain_def_children_run_one_after_another():
    order = []

    def make(name):
        @task(name)
        def child(ctx):
            order.append(f"{name} start")
            order.append(f"{name} end")
            return TaskResult(None)

        return child

    runner = runner_for(graph_of(FanOutTask("fan", [make("a"), make("b")])))
    session = await runner.create_session()
    await runner.run(session.id)

    assert order == ["a start", "a end", "b start", "b end"]
    data = (await runner.storage.get(session.id)).context.to_dict()
    assert "fanout.a.response" not in data  # None responses are not written
    assert data["fanout.a.next_action"] == "Continue"


async def test_a_failing_child_fails_the_fan_out_naming_it():
    @task("broken")
    async def broken(ctx):
        raise ValueError("no coverage data")

    fan = FanOutTask("checks", [Sleeps("fraud", 0), broken])
    runner = runner_for(graph_of(fan))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed) as caught:
        await runner.run(session.id)

    assert caught.value.task_id == "checks"
    assert "broken" in str(caught.value)
    assert "no coverage data" in str(caught.value)
    assert str(caught.value).startswith("Task 'checks' failed: ")
    assert (await runner.storage.get(session.id)).context.to_dict() == {}


async def test_a_fan_out_called_directly_fails_as_it_does_in_a_step():
    # As in a task's unit test: the error carries the fan-out's id and names the child.
    @task("broken")
    async def broken(ctx):
        raise ValueError("no coverage data")

    fan = FanOutTask("checks", [Sleeps("fraud", 0), broken])

    with pytest.raises(TaskExecutionFailed) as caught:
        await fan.run(Context())

    assert caught.value.task_id == "checks"
    assert str(caught.value) == (
        "Task 'checks' failed: child task 'broken' failed: no coverage data"
    )
    assert isinstance(caught.value.__cause__.__cause__, ValueError)

    runner = runner_for(graph_of(fan))
    session = await runner.create_session()
    with pytest.raises(TaskExecutionFailed) as in_a_step:
        await runner.run(session.id)
    assert str(in_a_step.value) == str(caught.value)


async def test_the_fan_out_timeout_covers_all_children():
    fan = FanOutTask("checks", [Sleeps("a", 10), Sleeps("b", 10)])
    runner = runner_for(graph_of(fan, task_timeout=0.05))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed, match=r"Task 'checks' timed out after 0\.05s"):
        await runner.run(session.id)


def test_fan_out_checks_its_children():
    with pytest.raises(TypeError, match="Tasks"):
        FanOutTask("f", ["not a task"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two children with id 'a'"):
        FanOutTask("f", [Sleeps("a"), Sleeps("a")])


async def test_a_fan_out_can_set_its_own_timeout():
    fan = FanOutTask("checks", [Sleeps("a", 10)], timeout=0.05)
    runner = runner_for(graph_of(fan, task_timeout=60))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed, match=r"timed out after 0\.05s"):
        await runner.run(session.id)
