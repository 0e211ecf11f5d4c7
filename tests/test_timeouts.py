"""Per-task time limits: async tasks are cancelled; plain def tasks only with their own timeout."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowcore import (
    ErrorDecision,
    ExecutionStatus,
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    RetryPolicy,
    Task,
    TaskExecutionFailed,
    TaskResult,
    task,
)

from .helpers import graph_of, runner_for


async def test_an_async_task_is_cancelled_at_the_graph_timeout():
    cancelled = asyncio.Event()

    @task("slow")
    async def slow(ctx):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return TaskResult.move_to_next()

    runner = runner_for(graph_of(slow, task_timeout=0.05))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed) as caught:
        await runner.run(session.id)

    assert str(caught.value) == "Task 'slow' timed out after 0.05s"
    assert caught.value.task_id == "slow"
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert cancelled.is_set()
    assert (await runner.storage.get(session.id)).version == 1


async def test_a_task_timeout_overrides_the_graphs():
    @task("slow", timeout=0.02)
    async def slow(ctx):
        await asyncio.sleep(10)

    runner = runner_for(graph_of(slow, task_timeout=60))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed, match=r"timed out after 0\.02s"):
        await runner.run(session.id)


async def test_an_async_task_within_its_limit_is_unaffected_and_the_runner_stays_usable():
    @task("quick")
    async def quick(ctx):
        await asyncio.sleep(0.01)
        return TaskResult("ok", NextAction.WaitForInput)

    runner = runner_for(graph_of(quick, task_timeout=1))
    session = await runner.create_session()

    assert (await runner.run(session.id)).response == "ok"
    # the timer was disarmed: later awaits in this task are not cancelled
    await asyncio.sleep(0.05)
    assert (await runner.run(session.id)).status == ExecutionStatus.WaitingForInput


async def test_each_task_of_a_chain_gets_its_own_limit():
    @task("first")
    async def first(ctx):
        await asyncio.sleep(0.06)
        return TaskResult.move_to_next_direct()

    @task("second")
    async def second(ctx):
        await asyncio.sleep(0.06)
        return TaskResult("done", NextAction.End)

    graph = graph_of(first, second, edges=[("first", "second")], task_timeout=0.1)
    runner = runner_for(graph)
    session = await runner.create_session()

    # 0.12 s in all, but each task stays under 0.1 s
    assert (await runner.run(session.id)).status == ExecutionStatus.Completed


async def test_an_outside_cancellation_still_propagates():
    @task("slow")
    async def slow(ctx):
        await asyncio.sleep(10)

    runner = runner_for(graph_of(slow, task_timeout=5))
    session = await runner.create_session()

    step = asyncio.ensure_future(runner.run(session.id))
    await asyncio.sleep(0.02)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step


async def test_a_plain_def_task_runs_inline_and_is_not_interrupted():
    ran_on = []

    @task("blocking")
    def blocking(ctx):
        ran_on.append(threading.get_ident())
        time.sleep(0.05)
        return TaskResult("finished", NextAction.WaitForInput)

    runner = runner_for(graph_of(blocking, task_timeout=0.01))
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.response == "finished"  # the graph's limit does not apply to plain defs
    assert ran_on == [threading.get_ident()]


async def test_a_plain_def_task_with_its_own_timeout_runs_in_a_thread_and_fails_at_the_limit():
    release = threading.Event()
    ran_on = []

    class Blocking(Task):
        id = "blocking"
        timeout = 0.05

        def run(self, ctx):
            ran_on.append(threading.get_ident())
            release.wait(5)
            return TaskResult.move_to_next()

    runner = runner_for(graph_of(Blocking()))
    session = await runner.create_session()

    started = time.monotonic()
    with pytest.raises(TaskExecutionFailed, match=r"Task 'blocking' timed out after 0\.05s"):
        await runner.run(session.id)
    assert time.monotonic() - started < 2
    assert len(ran_on) == 1
    assert ran_on[0] != threading.get_ident()
    release.set()


async def test_a_plain_def_task_with_its_own_timeout_succeeds_within_it():
    class Quick(Task):
        id = "quick"
        timeout = 2

        def run(self, ctx):
            ctx.set("thread", threading.get_ident())
            return TaskResult("ok", NextAction.End)

    runner = runner_for(graph_of(Quick()))
    session = await runner.create_session()

    assert (await runner.run(session.id)).status == ExecutionStatus.Completed
    assert (await runner.storage.get(session.id)).context.get("thread") != threading.get_ident()


async def test_a_task_raising_its_own_timeout_error_is_a_failure_not_a_timeout():
    @task("own")
    async def own(ctx):
        raise asyncio.TimeoutError("upstream API too slow")

    runner = runner_for(graph_of(own))
    session = await runner.create_session()
    with pytest.raises(TaskExecutionFailed, match="Task 'own' failed: upstream API too slow"):
        await runner.run(session.id)


async def test_the_limit_counts_from_the_start_of_the_task_not_its_first_await():
    @task("busy_then_waits")
    async def busy_then_waits(ctx):
        time.sleep(0.3)  # noqa: ASYNC251  (the point: work before the first await)
        await asyncio.sleep(10)

    runner = runner_for(graph_of(busy_then_waits, task_timeout=0.4))
    session = await runner.create_session()

    started = time.monotonic()
    with pytest.raises(TaskExecutionFailed, match=r"timed out after 0\.4s"):
        await runner.run(session.id)
    # cancelled 0.4 s after the task started (0.7 s if the clock had started at its first await)
    assert time.monotonic() - started < 0.6


async def test_an_async_task_that_never_waits_finishes_even_past_a_tiny_limit():
    @task("quick_async")
    async def quick_async(ctx):
        ctx.set("done", True)
        return TaskResult("ok", NextAction.End)

    runner = runner_for(graph_of(quick_async, task_timeout=1e-9))
    session = await runner.create_session()

    # Cancellation can only land at an await: a task with none completes.
    assert (await runner.run(session.id)).status == ExecutionStatus.Completed


async def test_a_task_that_swallows_its_cancellation_keeps_its_result():
    @task("stubborn")
    async def stubborn(ctx):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return TaskResult("finished anyway", NextAction.WaitForInput)
        return TaskResult("slept", NextAction.WaitForInput)

    runner = runner_for(graph_of(stubborn, task_timeout=0.02))
    session = await runner.create_session()

    assert (await runner.run(session.id)).response == "finished anyway"
    # the caller's own Task is not left half-cancelled: it can still wait
    await asyncio.sleep(0.01)
    current = asyncio.current_task()
    if hasattr(current, "cancelling"):
        assert current.cancelling() == 0


async def test_a_timed_out_attempt_cannot_write_into_the_next_attempt():
    late_write = threading.Event()
    attempts = []

    class Slow(Task):
        id = "slow"
        timeout = 0.5
        retry = RetryPolicy(max_attempts=2, initial_delay=0, jitter=False)

        def run(self, ctx):
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                time.sleep(0.8)  # past the limit: the attempt is abandoned, its thread runs on
                ctx.set("late", "from attempt 1")
                ctx.add_user_message("late message from attempt 1")
                late_write.set()
                return TaskResult("too late")
            late_write.wait(5)  # attempt 2 is still running when attempt 1 writes
            ctx.set("attempt", 2)
            return TaskResult("second", NextAction.End)

    runner = runner_for(graph_of(Slow()))
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.response == "second"
    stored = await runner.storage.get(session.id)
    assert stored.context.get("attempt") == 2
    assert "late" not in stored.context
    assert stored.context.chat_history_len() == 0


async def test_a_timed_out_attempt_cannot_write_into_what_an_error_handler_saves():
    written = threading.Event()

    class Slow(Task):
        id = "slow"
        timeout = 0.05

        def run(self, ctx):
            time.sleep(0.2)
            ctx.set("late", True)
            written.set()
            return TaskResult()

    @task("fallback")
    async def fallback(ctx):
        await asyncio.to_thread(written.wait, 5)  # the abandoned thread has written by now
        return TaskResult("sorry", NextAction.End)

    def go_on_to_fallback(failure):
        return ErrorDecision.Route(NextAction.ContinueAndExecute)

    graph = graph_of(Slow(), fallback, edges=[("slow", "fallback")])
    runner = FlowRunner(graph, InMemorySessionStorage(), error_handlers=[go_on_to_fallback])
    session = await runner.create_session()

    result = await runner.run(session.id)  # slow times out, fallback runs in the same step

    assert result.status == ExecutionStatus.Completed
    assert written.is_set()
    assert "late" not in (await runner.storage.get(session.id)).context


async def test_a_plain_def_task_with_a_timeout_that_ends_in_time_keeps_its_writes():
    class Quick(Task):
        id = "quick"
        timeout = 2

        def run(self, ctx):
            ctx.set("answer", 42)
            ctx.add_assistant_message("done")
            return TaskResult("ok", NextAction.End)

    runner = runner_for(graph_of(Quick()))
    session = await runner.create_session(context={"before": 1})
    await runner.run(session.id)
    stored = (await runner.storage.get(session.id)).context
    assert stored.to_dict() == {"before": 1, "answer": 42}
    assert [m.content for m in stored.get_chat_history()] == ["done"]
