"""RetryPolicy: failed attempts are tried again on the context as it was before."""

from __future__ import annotations

import asyncio

import pytest

from flowcore import NextAction, RetryPolicy, Task, TaskExecutionFailed, TaskResult, task

from .helpers import graph_of, runner_for

FAST = {"initial_delay": 0.001, "jitter": False}


class Flaky(Task):
    """Fails the first `failures` attempts, each after scribbling on the context."""

    id = "flaky"

    def __init__(self, failures: int, retry: RetryPolicy, error: type[Exception] = RuntimeError):
        self.failures = failures
        self.retry = retry
        self.error = error
        self.attempts = 0

    def run(self, ctx):
        self.attempts += 1
        ctx.set("scratch", [*ctx.get("scratch", []), self.attempts])
        ctx.add_assistant_message(f"attempt {self.attempts}")
        if self.attempts <= self.failures:
            raise self.error(f"attempt {self.attempts} failed")
        return TaskResult(f"ok on attempt {self.attempts}", NextAction.End)


async def test_a_failed_attempt_is_retried_on_the_restored_context():
    flaky = Flaky(2, RetryPolicy(max_attempts=3, **FAST))
    runner = runner_for(graph_of(flaky))
    session = await runner.create_session(context={"scratch": [0]})

    result = await runner.run(session.id)

    assert result.response == "ok on attempt 3"
    stored = await runner.storage.get(session.id)
    assert stored.context.get("scratch") == [0, 3]  # attempts 1 and 2 were undone
    assert [m.content for m in stored.context.get_chat_history()] == ["attempt 3"]


async def test_retries_give_up_after_max_attempts():
    flaky = Flaky(5, RetryPolicy(max_attempts=3, **FAST))
    runner = runner_for(graph_of(flaky))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed, match="attempt 3 failed"):
        await runner.run(session.id)
    assert flaky.attempts == 3
    assert (await runner.storage.get(session.id)).version == 1


async def test_only_listed_exceptions_are_retried():
    flaky = Flaky(1, RetryPolicy(max_attempts=3, retry_on=(ConnectionError,), **FAST), KeyError)
    runner = runner_for(graph_of(flaky))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed):
        await runner.run(session.id)
    assert flaky.attempts == 1


async def test_a_timeout_counts_as_a_failed_attempt():
    attempts = []

    @task("slow_then_fast", timeout=0.05, retry=RetryPolicy(retry_on=(TimeoutError,), **FAST))
    async def slow_then_fast(ctx):
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(10)
        return TaskResult("fast enough", NextAction.End)

    runner = runner_for(graph_of(slow_then_fast))
    session = await runner.create_session()

    assert (await runner.run(session.id)).response == "fast enough"
    assert len(attempts) == 2


async def test_async_tasks_are_retried_too():
    calls = []

    @task("async_flaky", retry=RetryPolicy(max_attempts=2, **FAST))
    async def async_flaky(ctx):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return TaskResult("ok", NextAction.End)

    runner = runner_for(graph_of(async_flaky))
    session = await runner.create_session()
    assert (await runner.run(session.id)).response == "ok"


def test_delays_grow_and_are_capped():
    policy = RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=0.3, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    jittered = RetryPolicy(initial_delay=1, jitter=True)
    assert all(0.5 <= jittered.delay(1) <= 1 for _ in range(50))
