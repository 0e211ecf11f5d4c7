"""Sessions driven to completion by real worker processes, each step applied exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import flowcore_celery
import pytest
from celery import Celery
from celery_services import Workers

from flowcore import ExecutionStatus, FlowRunner

pytestmark = pytest.mark.slow

ALL = ["first", "second", "third"]


async def create(runner: FlowRunner, ids: list[str], **context: object) -> None:
    for session_id in ids:
        await runner.create_session(session_id, context=dict(context))


async def assert_applied_once(runner: FlowRunner, ids: list[str]) -> None:
    """Each session completed, each of its tasks saved once: a step applied twice would show
    twice in ``applied`` (the context is saved with the step) and raise the version."""
    for session_id in ids:
        stored = await runner.storage.get(session_id)
        assert stored is not None
        assert (stored.is_completed, stored.context.get("applied"), stored.version) == (
            True,
            ALL,
            4,
        ), session_id


async def assert_woken_and_completed_once(runner: FlowRunner, session_id: str) -> None:
    """The woken session completes within 30 s, every step applied once."""
    deadline = time.monotonic() + 30
    while not (stored := await runner.storage.get(session_id)).is_completed:
        assert time.monotonic() < deadline, "the woken session did not complete"
        await asyncio.sleep(0.1)
    assert (stored.context.get("applied"), stored.version) == (ALL, 4)


async def test_200_sessions_driven_by_two_workers(
    app: Celery, runner: FlowRunner, prefix: str
) -> None:
    ids = [f"{prefix}-{n}" for n in range(200)]
    await create(runner, ids)

    results = [flowcore_celery.submit(app, session_id, check=False) for session_id in ids]
    values = [result.get(timeout=60) for result in results]

    assert {value["status"] for value in values} == {"Completed"}
    assert [value["session_id"] for value in values] == ids
    assert {value["steps"] for value in values} == {3}
    assert values[0]["response"] == "done: first second third"
    await assert_applied_once(runner, ids)


async def test_a_worker_killed_mid_run_loses_nothing_and_applies_nothing_twice(
    services: None, runner: FlowRunner, prefix: str, tmp_path
) -> None:
    from celery_app import make_app
    from celery_services import STORAGE_URL, close_app, delete_queue, new_queue

    queue = new_queue()
    workers = Workers(queue, tmp_path).start()
    app = make_app(queue, STORAGE_URL)
    try:
        ids = [f"{prefix}-{n}" for n in range(150)]
        await create(runner, ids, sleep=0.01)  # each task takes 10 ms: steps are in flight
        results = [flowcore_celery.submit(app, session_id, check=False) for session_id in ids]
        deadline = time.monotonic() + 30
        while sum(result.ready() for result in results) < len(ids) // 4:
            assert time.monotonic() < deadline, "the workers made no progress"
            await asyncio.sleep(0.02)
        workers.kill(0)  # SIGKILL, its pool processes too, while messages are unacknowledged

        values = [result.get(timeout=60) for result in results]
    finally:
        workers.stop()
        close_app(app)
        delete_queue(queue)

    assert {value["status"] for value in values} == {"Completed"}
    await assert_applied_once(runner, ids)


async def test_a_timer_wakes_the_session_without_another_submit(
    app: Celery, runner: FlowRunner, prefix: str
) -> None:
    await runner.create_session(prefix, context={"wait": 2})
    sent = datetime.now(timezone.utc)

    value = flowcore_celery.submit(app, prefix).get(timeout=30)

    assert value["status"] == "Completed"
    stored = await runner.storage.get(prefix)
    assert stored is not None
    assert stored.context.get("applied") == ALL
    assert (stored.context.get("second_at") - sent).total_seconds() >= 2


async def test_a_timer_woken_by_its_eta_and_by_wake_due_runs_its_step_once(
    app: Celery, runner: FlowRunner, prefix: str
) -> None:
    await runner.create_session(prefix, context={"wait": 1})
    result = flowcore_celery.submit(app, prefix)  # the drive goes on at the eta, in a second
    await asyncio.sleep(0.9)
    woken = []
    for _ in range(8):  # around its time: wakes that race the eta message
        woken += flowcore_celery.wake_due(app)
        await asyncio.sleep(0.05)

    value = result.get(timeout=30)
    assert value["status"] == "Completed"  # the drive's end, whichever wake took the step
    await assert_woken_and_completed_once(runner, prefix)


async def test_wake_due_sends_the_sessions_storage_reports_due(
    app: Celery, runner: FlowRunner, prefix: str
) -> None:
    await runner.create_session(prefix, context={"wait": 4})  # beyond the workers' wake_ahead

    value = flowcore_celery.submit(app, prefix).get(timeout=30)
    assert value["status"] == "Scheduled"
    assert value["next_task_id"] == "second"
    assert flowcore_celery.to_status(value) == ExecutionStatus.Scheduled(
        "second", datetime.fromisoformat(value["wake_at"])
    )
    assert prefix not in flowcore_celery.wake_due(app)  # not due yet

    await asyncio.sleep(4.2)
    assert prefix in flowcore_celery.wake_due(app)
    flowcore_celery.wake_due(app)  # a second round before the first wake ran: a duplicate
    await assert_woken_and_completed_once(runner, prefix)


async def test_duplicates_of_one_submit_apply_the_step_once(
    app: Celery, runner: FlowRunner, prefix: str
) -> None:
    await runner.create_session(prefix, context={"ask": True})
    asked = flowcore_celery.submit(app, prefix).get(timeout=30)
    assert asked["status"] == "WaitingForInput"

    duplicates = [
        flowcore_celery.submit(app, prefix, context_updates={"answer": 42}, request_id="answer-1")
        for _ in range(6)
    ]
    values = [result.get(timeout=30) for result in duplicates]

    assert {value["status"] for value in values} == {"Completed"}
    stored = await runner.storage.get(prefix)
    assert stored is not None
    assert (stored.context.get("applied"), stored.version) == (ALL, 5)
    again = flowcore_celery.submit(
        app, prefix, context_updates={"answer": 42}, request_id="answer-1", drive=False
    ).get(timeout=30)
    assert again["replayed"] is True
    assert (await runner.storage.get(prefix)).version == 5


async def test_concurrent_steps_of_one_session_are_retried_not_dropped(
    app: Celery, runner: FlowRunner, prefix: str, workers: Workers
) -> None:
    await runner.create_session(prefix, context={"sleep": 0.1})

    # Eight single steps at once: four pool processes take them together, all but one of
    # each round lose the compare-and-set and are sent again after a backoff.
    results = [flowcore_celery.submit(app, prefix, drive=False) for _ in range(8)]
    values = [result.get(timeout=60) for result in results]

    statuses = sorted(value["status"] for value in values)
    assert statuses.count("Paused") == 2  # first -> second, second -> third
    assert statuses.count("Completed") == 6  # third -> end, then five of a completed session
    assert all(value["error"] is None for value in values)
    stored = await runner.storage.get(prefix)
    assert (stored.context.get("applied"), stored.version) == (ALL, 4)
    assert "SessionConflict" in workers.log()  # the race did happen, and was retried
