"""FlowRunner.stream and flowcore.emit: a step's events as they happen, atomic as run()."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing

import pytest

from flowcore import (
    Context,
    ExecutionResult,
    ExecutionStatus,
    FanOutTask,
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    StepEvent,
    Task,
    TaskExecutionFailed,
    TaskRecord,
    TaskResult,
    emit,
    task,
)

from .helpers import Fails, Step, graph_of


@task("think")
async def think(ctx: Context) -> TaskResult:
    for token in ("Hel", "lo"):
        await asyncio.sleep(0)
        emit(token)
    return TaskResult("Hello", NextAction.ContinueAndExecute)


@task("count")
def count(ctx: Context) -> TaskResult:
    emit(1)
    emit(2)
    ctx.set("counted", True)
    return TaskResult("counted", NextAction.ContinueAndExecute)


def chain_runner() -> FlowRunner:
    graph = graph_of(
        think,
        count,
        Step("ask", NextAction.WaitForInput),
        edges=[("think", "count"), ("count", "ask")],
    )
    return FlowRunner(graph, InMemorySessionStorage(), plugins=False)


async def collect(runner: FlowRunner, session_id: str = "s", **options: object) -> list[object]:
    return [item async for item in runner.stream(session_id, **options)]


async def test_a_chain_streams_each_task_start_output_and_end_then_the_result():
    runner = chain_runner()
    await runner.create_session("s")

    items = await collect(runner)

    result = items[-1]
    assert items[:-1] == [
        StepEvent("task_started", "think"),
        StepEvent("output", "think", "Hel"),
        StepEvent("output", "think", "lo"),
        StepEvent(
            "task_ended", "think", TaskRecord("think", "Hello", None, NextAction.ContinueAndExecute)
        ),
        StepEvent("task_started", "count"),
        StepEvent("output", "count", 1),
        StepEvent("output", "count", 2),
        StepEvent(
            "task_ended",
            "count",
            TaskRecord("count", "counted", None, NextAction.ContinueAndExecute),
        ),
        StepEvent("task_started", "ask"),
        StepEvent(
            "task_ended", "ask", TaskRecord("ask", "ask done", None, NextAction.WaitForInput)
        ),
    ]
    assert isinstance(result, ExecutionResult)
    assert result == ExecutionResult("ask done", ExecutionStatus.WaitingForInput)
    assert [t.task_id for t in result.tasks] == ["think", "count", "ask"]
    assert result.version == 2
    stored = await runner.storage.get("s")
    assert (stored.version, stored.current_task_id, stored.context.get("counted")) == (
        2,
        "ask",
        True,
    )


async def test_a_streamed_step_saves_what_run_would_save():
    streamed, ran = chain_runner(), chain_runner()
    for runner in (streamed, ran):
        await runner.create_session("s", context={"x": 1})

    items = await collect(streamed, context_updates={"y": 2}, request_id="r-1")
    result = await ran.run("s", context_updates={"y": 2}, request_id="r-1")

    assert items[-1] == result
    a, b = await streamed.storage.get("s"), await ran.storage.get("s")
    assert (a.version, a.current_task_id, a.history, dict(a.context.items())) == (
        b.version,
        b.current_task_id,
        b.history,
        dict(b.context.items()),
    )


def test_emit_outside_a_stream_does_nothing():
    assert emit("token") is None


async def test_run_ignores_what_tasks_emit():
    runner = chain_runner()
    await runner.create_session("s")

    result = await runner.run("s")

    assert result.response == "ask done"


async def test_a_failing_step_streams_what_happened_then_raises_and_saves_nothing():
    graph = graph_of(think, Fails("boom"), edges=[("think", "boom")])
    runner = FlowRunner(graph, InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")
    seen: list[object] = []

    async def consume() -> None:
        async for item in runner.stream("s"):
            seen.append(item)

    with pytest.raises(TaskExecutionFailed, match="Task 'boom' failed"):
        await consume()

    assert seen[0] == StepEvent("task_started", "think")
    assert seen[-1] == StepEvent("task_started", "boom")
    stored = await runner.storage.get("s")
    assert (stored.version, stored.current_task_id) == (1, "think")


class Endless(Task):
    """Emits a token every few milliseconds until cancelled; remembers that it was."""

    id = "endless"

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def run(self, ctx: Context) -> TaskResult:
        ctx.set("written", True)
        try:
            for i in range(10_000):
                emit(i)
                await asyncio.sleep(0.002)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return TaskResult.move_to_next()


async def test_a_consumer_that_stops_early_cancels_the_step_and_nothing_is_saved():
    endless = Endless()
    runner = FlowRunner(
        graph_of(endless, Step("next"), edges=[("endless", "next")]), InMemorySessionStorage()
    )
    await runner.create_session("s")

    async with aclosing(runner.stream("s")) as events:
        async for event in events:
            if event == StepEvent("output", "endless", 3):
                break

    assert endless.cancelled.is_set()
    stored = await runner.storage.get("s")
    assert (stored.version, stored.current_task_id) == (1, "endless")
    assert "written" not in stored.context


async def test_a_consumer_task_that_is_cancelled_cancels_the_step():
    endless = Endless()
    runner = FlowRunner(graph_of(endless), InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")
    started = asyncio.Event()

    async def consume() -> None:
        async for _event in runner.stream("s"):
            started.set()

    consumer = asyncio.create_task(consume())
    await started.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    await asyncio.wait_for(endless.cancelled.wait(), 5)
    assert (await runner.storage.get("s")).version == 1


async def test_a_plain_task_in_a_worker_thread_streams_its_output():
    threads: list[str] = []

    class Threaded(Task):
        id = "threaded"
        timeout = 5.0  # a plain def with its own timeout runs in a worker thread

        def run(self, ctx: Context) -> TaskResult:
            threads.append(threading.current_thread().name)
            emit("from a thread")
            return TaskResult("done", NextAction.WaitForInput)

    runner = FlowRunner(graph_of(Threaded()), InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")

    items = await collect(runner)

    assert threads
    assert threads[0] != threading.main_thread().name
    assert StepEvent("output", "threaded", "from a thread") in items


async def test_emitted_values_are_delivered_as_they_are_not_stored():
    lock = threading.Lock()

    @task("odd")
    def odd(ctx: Context) -> TaskResult:
        emit(lock)  # no codec could store this: it is news, not state
        return TaskResult(None, NextAction.WaitForInput)

    runner = FlowRunner(graph_of(odd), InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")

    items = await collect(runner)

    assert items[1].value is lock
    assert (await runner.storage.get("s")).version == 2


async def test_a_fan_out_child_streams_under_the_fan_out():
    @task("child")
    async def child(ctx: Context) -> TaskResult:
        emit("from the child")
        return TaskResult("c")

    runner = FlowRunner(
        graph_of(FanOutTask("fan", [child])), InMemorySessionStorage(), plugins=False
    )
    await runner.create_session("s")

    items = await collect(runner)

    assert StepEvent("output", "fan", "from the child") in items


async def test_a_replayed_request_streams_only_the_recorded_result():
    runner = chain_runner()
    await runner.create_session("s")
    first = await runner.run("s", request_id="r-1")

    items = await collect(runner, request_id="r-1")

    assert items == [first]
    assert items[0].replayed is True


async def test_streaming_a_completed_or_missing_session():
    runner = FlowRunner(graph_of(Step("end", NextAction.End)), InMemorySessionStorage())
    await runner.create_session("s")
    await runner.run("s")

    assert await collect(runner) == [ExecutionResult(None, ExecutionStatus.Completed)]
    with pytest.raises(Exception, match="missing"):
        await collect(runner, "missing")


async def test_tracers_still_see_a_streamed_step():
    seen: list[str] = []

    class Tracer:
        def task_started(self, event: object) -> None:
            seen.append(event.task_id)  # type: ignore[attr-defined]

    runner = FlowRunner(
        chain_runner().graph, InMemorySessionStorage(), tracers=[Tracer()], plugins=False
    )
    await runner.create_session("s")

    await collect(runner)

    assert seen == ["think", "count", "ask"]


def test_a_step_event_is_a_frozen_value():
    event = StepEvent("output", "t", "tok")

    assert event == StepEvent("output", "t", "tok")
    assert event != StepEvent("output", "t", "other")
    assert repr(event) == "StepEvent(kind='output', task_id='t', value='tok')"
    match event:
        case StepEvent(kind="output", value=token):
            assert token == "tok"
        case _:
            pytest.fail("StepEvent does not match by field")
    with pytest.raises(AttributeError):
        event.value = "x"  # type: ignore[misc]


async def test_a_run_inside_a_streamed_task_is_not_streamed_as_the_step():
    inner = FlowRunner(graph_of(Step("inner", NextAction.WaitForInput)), InMemorySessionStorage())

    class Outer(Task):
        id = "outer"

        async def run(self, ctx: Context) -> TaskResult:
            result = await inner.run("i")
            emit(result.response)
            return TaskResult("outer done", NextAction.WaitForInput)

    runner = FlowRunner(graph_of(Outer()), InMemorySessionStorage(), plugins=False)
    await inner.create_session("i")
    await runner.create_session("s")

    items = await collect(runner)

    assert [(e.kind, e.task_id) for e in items[:-1]] == [
        ("task_started", "outer"),
        ("output", "outer"),
        ("task_ended", "outer"),
    ]
    assert items[1].value == "inner done"
    assert items[-1].response == "outer done"
