"""What goes wrong, and what it says: failing tasks, poison messages, unreachable services."""

from __future__ import annotations

import asyncio

import flowcore_celery
import pytest
from celery import Celery
from celery_app import make_app
from celery_graphs import build
from celery_services import (
    STORAGE_URL,
    Workers,
    close_app,
    delete_queue,
    new_queue,
    queue_depth,
)

from flowcore import FlowRunner, GraphError, SerializationError, SessionNotFound, StorageError

pytestmark = pytest.mark.slow


async def test_a_failing_task_ends_the_drive_with_its_error(
    app: Celery, runner: FlowRunner, prefix: str
) -> None:
    await runner.create_session(prefix, context={"fail": True})

    value = flowcore_celery.submit(app, prefix).get(timeout=30)

    assert value["status"] == "Error"
    assert value["error"] == "TaskExecutionFailed"
    assert value["message"] == "Task 'second' failed: the vendor registry is down"
    assert value["steps"] == 2
    # The core saved the first step; nothing of the failed one.
    stored = await runner.storage.get(prefix)
    assert (stored.current_task_id, stored.version, stored.context.get("applied")) == (
        "second",
        2,
        ["first"],
    )


async def test_a_session_a_newer_deployment_stepped_waits_for_a_worker_that_can_run_it(
    app: Celery, runner: FlowRunner, prefix: str, workers: Workers
) -> None:
    # A worker of version 2 of the graph created (and would step) the session; these workers
    # run version 1, which must not run it: the step is sent again, not failed.
    await FlowRunner(build(version=2), runner.storage).create_session(prefix)
    result = flowcore_celery.submit(app, prefix, drive=False)
    refused = f"session '{prefix}' is at graph version 2, newer than this worker's 1"
    for _ in range(100):
        if refused in workers.log():
            break
        await asyncio.sleep(0.1)
    assert refused in workers.log()
    assert not result.ready()

    # Once a worker can run it (here: the session brought back to version 1), the retry runs.
    stored = await runner.storage.get(prefix)
    stored.graph_version = 1
    await runner.storage.save(stored)
    value = result.get(timeout=30)
    assert (value["status"], value["next_task_id"]) == ("Paused", "second")


async def test_submit_checks_that_the_session_exists(app: Celery) -> None:
    with pytest.raises(SessionNotFound, match="'no-such-session' not found"):
        flowcore_celery.submit(app, "no-such-session")


async def test_an_unknown_session_is_rejected_once_not_retried(
    app: Celery, workers: Workers, prefix: str
) -> None:
    result = flowcore_celery.submit(app, prefix, check=False)

    with pytest.raises(flowcore_celery.MessageRejected) as raised:
        result.get(timeout=30)
    assert str(raised.value) == (
        f"The step message for session '{prefix}' was rejected by the worker, not to be "
        f"retried: SessionNotFound: Session '{prefix}' not found: create it first "
        "(FlowRunner.create_session or storage.save)"
    )
    await asyncio.sleep(0.5)
    log = workers.log()
    assert log.count(f"rejected the step message for session '{prefix}'") == 1
    assert queue_depth(workers.queue) == 0


async def test_a_graph_that_cannot_be_imported_is_reported_and_rejected(
    services: None, runner: FlowRunner, prefix: str, tmp_path
) -> None:
    queue = new_queue()
    workers = Workers(
        queue, tmp_path, count=1, concurrency=1, FLOWCORE_CELERY_GRAPH="celery_missing:graph"
    ).start()
    app = make_app(queue, STORAGE_URL)
    try:
        await runner.create_session(prefix)
        with pytest.raises(flowcore_celery.MessageRejected, match="GraphReferenceError") as raised:
            flowcore_celery.submit(app, prefix).get(timeout=30)
        await asyncio.sleep(0.5)
        depth = queue_depth(queue)
    finally:
        workers.stop()
        close_app(app)
        delete_queue(queue)

    assert (
        "The graph 'celery_missing:graph' given to flowcore_celery.install() could not be "
        "imported: ModuleNotFoundError: No module named 'celery_missing'" in str(raised.value)
    )
    log = workers.log()
    assert "this worker process cannot run steps yet" in log  # at start, before any message
    assert log.count(f"rejected the step message for session '{prefix}'") == 1
    assert depth == 0
    stored = await runner.storage.get(prefix)
    assert stored.version == 1  # untouched: it can be sent again once the graph imports


def test_an_unreachable_broker_is_named_with_its_password_hidden() -> None:
    app = make_app("nowhere", "memory://", broker="amqp://guest:s3cret@127.0.0.1:1//")
    try:
        with pytest.raises(flowcore_celery.BrokerUnreachable) as raised:
            flowcore_celery.submit(app, "claim-1", check=False)
    finally:
        close_app(app)
    message = str(raised.value)
    assert message.startswith(
        "flowcore-celery could not send the step of session 'claim-1': the Celery broker "
        "amqp://guest:***@127.0.0.1:1// is unreachable ("
    )
    assert "s3cret" not in message
    assert isinstance(raised.value, ConnectionError)


def test_an_unreachable_storage_at_submit_is_named_with_its_password_hidden() -> None:
    app = make_app("nowhere", "postgresql://postgres:s3cret@127.0.0.1:1/test?connect_timeout=2")
    try:
        with pytest.raises(StorageError) as raised:
            flowcore_celery.submit(app, "claim-1")
    finally:
        close_app(app)
    message = str(raised.value)
    assert message.startswith(
        "flowcore-celery could not open the storage "
        "postgresql://postgres:***@127.0.0.1:1/test?connect_timeout=2 given to install(): "
    )
    assert "Check that the PostgreSQL server is running" in message
    assert "s3cret" not in message


def test_context_updates_that_cannot_be_stored_fail_at_submit() -> None:
    app = make_app("nowhere", "memory://")
    try:
        with pytest.raises(SerializationError, match=r"context\['lock'\]"):
            flowcore_celery.submit(
                app, "claim-1", context_updates={"lock": asyncio.Lock()}, check=False
            )
    finally:
        close_app(app)


def test_submit_on_an_app_without_install_says_what_to_do() -> None:
    app = Celery("plain", broker="memory://")
    with pytest.raises(
        flowcore_celery.NotInstalled, match=r"install\(app, graph=..., storage=...\)"
    ):
        flowcore_celery.submit(app, "claim-1")
    app.close()


def test_install_twice_on_one_app_is_refused() -> None:
    app = make_app("nowhere", "memory://")
    try:
        with pytest.raises(GraphError, match="already called on the Celery app"):
            flowcore_celery.install(app, graph="celery_graphs:graph", storage="memory://")
    finally:
        close_app(app)


@pytest.mark.parametrize("steps", [0, 8, "4"])
def test_steps_per_message_stays_below_the_request_record(steps: object) -> None:
    with pytest.raises(ValueError, match="steps_per_message must be an int from 1 to 7"):
        make_app("nowhere", "memory://", steps_per_message=steps)
