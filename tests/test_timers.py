"""Durable timers: NextAction.WaitUntil, ExecutionStatus.Scheduled and Session.wake_at."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest

from flowcore import (
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    Session,
    TaskRecord,
)

from .helpers import Step, graph_of

UTC = timezone.utc


def reminder(wait: NextAction) -> FlowRunner:
    graph = graph_of(
        Step("ask", wait, response="I will remind you"),
        Step("remind", NextAction.WaitForInput, response="Reminder!"),
        edges=[("ask", "remind")],
    )
    return FlowRunner(graph, InMemorySessionStorage(), plugins=False)


async def test_wait_until_moves_on_and_schedules_the_next_task():
    runner = reminder(NextAction.WaitUntil(timedelta(hours=24)))
    await runner.create_session("s")
    before = datetime.now(UTC)

    result = await runner.run("s")

    match result.status:
        case ExecutionStatus.Scheduled(next_task_id="remind", wake_at=wake_at):
            pass
        case _:
            pytest.fail(f"not Scheduled: {result.status!r}")
    assert before + timedelta(hours=24) <= wake_at <= datetime.now(UTC) + timedelta(hours=24)
    assert wake_at.utcoffset() == timedelta(0)
    assert result.response == "I will remind you"
    stored = await runner.storage.get("s")
    assert (stored.current_task_id, stored.wake_at, stored.history) == ("remind", wake_at, ["ask"])
    assert await runner.storage.due_sessions() == []
    assert await runner.storage.due_sessions(wake_at) == ["s"]


async def test_a_run_before_the_time_runs_nothing_and_saves_nothing():
    runner = reminder(NextAction.WaitUntil(timedelta(hours=1)))
    await runner.create_session("s")
    scheduled = await runner.run("s")

    early = await runner.run("s", context_updates={"answer": "too soon"}, request_id="r-early")

    assert early == ExecutionResult(None, scheduled.status)
    assert (early.tasks, early.version, early.replayed) == ((), 2, False)
    stored = await runner.storage.get("s")
    assert stored.version == 2
    assert "answer" not in stored.context
    assert stored._requests == []


async def test_the_first_run_at_or_after_the_time_proceeds_and_clears_it():
    at = datetime(2020, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5)))
    runner = reminder(NextAction.WaitUntil(at))
    await runner.create_session("s")

    scheduled = await runner.run("s")
    assert scheduled.status == ExecutionStatus.Scheduled("remind", at)
    assert await runner.storage.due_sessions() == ["s"]
    woken = await runner.run("s")

    assert woken.response == "Reminder!"
    assert woken.tasks == (TaskRecord("remind", "Reminder!", None, NextAction.WaitForInput),)
    stored = await runner.storage.get("s")
    assert stored.wake_at is None
    assert await runner.storage.due_sessions() == []


async def test_wait_until_with_no_edge_pauses_and_sets_no_timer():
    runner = FlowRunner(
        graph_of(Step("alone", NextAction.WaitUntil(timedelta(seconds=5)))),
        InMemorySessionStorage(),
        plugins=False,
    )
    await runner.create_session("s")

    result = await runner.run("s")

    assert result.status == ExecutionStatus.Paused(
        "alone", "No outgoing edge found from current task"
    )
    assert (await runner.storage.get("s")).wake_at is None


async def test_graph_execute_session_holds_a_session_that_waits():
    runner = reminder(NextAction.WaitUntil(timedelta(minutes=5)))
    session = Session.new_from_task("s", "remind")
    session.wake_at = datetime.now(UTC) + timedelta(minutes=5)

    result = await runner.graph.execute_session(session)

    assert result.status == ExecutionStatus.Scheduled("remind", session.wake_at)
    assert session.current_task_id == "remind"


@pytest.mark.parametrize(
    ("when", "error", "match"),
    [
        (datetime(2030, 1, 1), ValueError, "must be an aware datetime, got the naive"),
        (timedelta(seconds=-1), ValueError, "timedelta >= 0"),
        ("tomorrow", TypeError, "got str: 'tomorrow'"),
        (3600, TypeError, "got int"),
    ],
)
def test_wait_until_refuses_a_time_it_cannot_wait_for(when, error, match):
    with pytest.raises(error, match=match):
        NextAction.WaitUntil(when)


def test_wait_until_and_scheduled_are_values():
    at = datetime(2030, 1, 1, tzinfo=UTC)
    wait = NextAction.WaitUntil(at)

    assert wait == NextAction.WaitUntil(at)
    assert wait != NextAction.WaitUntil(timedelta(hours=1))
    assert hash(wait) == hash(NextAction.WaitUntil(at))
    assert wait.name == "WaitUntil"
    assert wait.when == at
    assert repr(wait) == f"NextAction.WaitUntil({at!r})"
    assert str(NextAction.WaitUntil(timedelta(hours=1))) == "WaitUntil(1:00:00)"
    assert pickle.loads(pickle.dumps(wait)) == wait
    match wait:
        case NextAction.WaitUntil(when=w):
            assert w == at
        case _:
            pytest.fail("WaitUntil does not match")

    status = ExecutionStatus.Scheduled("t", at)
    assert status == ExecutionStatus.Scheduled("t", at)
    assert status != ExecutionStatus.Paused("t", "x")
    assert status.name == "Scheduled"
    assert repr(status) == f"ExecutionStatus.Scheduled(next_task_id='t', wake_at={at!r})"
    assert pickle.loads(pickle.dumps(status)) == status
    with pytest.raises(ValueError, match="naive"):
        ExecutionStatus.Scheduled("t", datetime(2030, 1, 1))


def test_a_session_shows_its_timer():
    session = Session.new_from_task("s", "t")
    assert "wake_at" not in repr(session)
    session.wake_at = datetime(2030, 1, 1, tzinfo=UTC)
    assert "wake_at=datetime.datetime(2030, 1, 1" in repr(session)
