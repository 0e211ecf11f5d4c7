"""The pieces that need no broker: graph references, the messages' context updates, results,
the kept event loop."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import flowcore_celery
import pytest
from flowcore_celery._loop import LoopThread
from flowcore_celery._messages import decode_updates, encode_updates, request_id_of

from flowcore import ExecutionResult, ExecutionStatus, Graph


def test_a_graph_reference_names_a_graph_or_a_function_returning_one() -> None:
    assert isinstance(flowcore_celery.import_graph("celery_graphs:graph"), Graph)
    assert flowcore_celery.import_graph("celery_graphs:build").id == "celery-tests"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("celery_graphs", "is not 'module:attribute': write it as 'package.module:graph'"),
        ("celery_missing:graph", "ModuleNotFoundError: No module named 'celery_missing'"),
        ("celery_graphs:nothing", "AttributeError"),
        ("celery_graphs:record", "raised TypeError"),
        ("celery_graphs:first", "names a FunctionTask, not a flowcore Graph"),
    ],
)
def test_a_bad_graph_reference_says_what_is_wrong(reference: str, message: str) -> None:
    with pytest.raises(flowcore_celery.GraphReferenceError, match=message.replace("(", r"\(")):
        flowcore_celery.import_graph(reference)


def test_context_updates_travel_as_flowcore_stores_them() -> None:
    updates = {
        "amount": Decimal("640.50"),
        "due": datetime(2030, 1, 2, 3, 4, tzinfo=timezone.utc),
        "lines": (1, "two"),
        "tags": {"a", "b"},
    }
    text = encode_updates(updates)
    assert isinstance(text, str)
    assert decode_updates(text) == updates
    assert encode_updates({}) is None
    assert decode_updates(None) is None


def test_each_step_of_a_drive_has_its_own_request_id() -> None:
    assert [request_id_of("r1", n) for n in range(3)] == ["r1", "r1#1", "r1#2"]


def test_a_result_is_plain_data_and_reads_back_as_a_status() -> None:
    wake_at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for status in [
        ExecutionStatus.Completed,
        ExecutionStatus.WaitingForInput,
        ExecutionStatus.Paused("b", "Task completed, continuing to next task"),
        ExecutionStatus.Scheduled("b", wake_at),
        ExecutionStatus.Error("it broke"),
    ]:
        result = ExecutionResult("hi", status, session_id="s", version=3, current_task_id="a")
        from flowcore_celery._results import step_result

        data = step_result("s", result, steps=1, request_id="r")
        assert flowcore_celery.to_status(data) == status
        assert (data["response"], data["version"], data["current_task_id"]) == ("hi", 3, "a")


def test_the_loop_is_kept_across_calls_and_threads() -> None:
    loop = LoopThread("test-loop")

    async def current() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first = loop.run(current())
    seen: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: seen.append(loop.run(current())))
    thread.start()
    thread.join()
    assert seen == [first]
    assert loop.run(current()) is first
    assert loop.is_running()
    loop.stop()
    assert not loop.is_running()


def test_the_beat_entry_runs_wake_due() -> None:
    assert flowcore_celery.beat_entry(timedelta(seconds=10), limit=50) == {
        "task": "flowcore.wake_due",
        "schedule": timedelta(seconds=10),
        "kwargs": {"limit": 50},
    }
