"""The step's outcome with the plugin: unchanged unless it is configured to route, one event per
failed attempt whichever handler decides, and a plugin that fails never breaks the step."""

from __future__ import annotations

import logging
from typing import Any

import flowcore_sentry
import pytest
import sentry_sdk
from sentry_memory import DSN

from flowcore import (
    Context,
    ErrorDecision,
    ExecutionStatus,
    FlowRunner,
    GraphBuilder,
    InMemorySessionStorage,
    NextAction,
    RetryPolicy,
    TaskExecutionFailed,
    TaskFailure,
    TaskResult,
    task,
)


@task("charge", retry=RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=False))
def charge(ctx: Context) -> TaskResult:
    ctx.set("charged", True)
    raise ConnectionError("card declined")


@task("apologise")
def apologise(ctx: Context) -> TaskResult:
    return TaskResult("Sorry, your card was declined.", NextAction.WaitForInput)


@task("ship")
def ship(ctx: Context) -> TaskResult:
    raise RuntimeError("no courier")


def shop() -> Any:
    return (
        GraphBuilder("shop")
        .add_task(charge)
        .add_task(apologise)
        .add_task(ship)
        .add_edge("charge", "ship")
        .build()
    )


async def step(session_id: str = "order-1", **runner_options: Any) -> tuple[object, object]:
    """Run one step of a fresh session of ``shop()``: (its result or error, the stored session)."""
    storage = InMemorySessionStorage()
    runner = FlowRunner(shop(), storage, **runner_options)
    await runner.create_session(session_id)
    try:
        outcome: object = await runner.run(session_id)
    except TaskExecutionFailed as failure:
        outcome = str(failure)
    stored = await storage.get(session_id)
    assert stored is not None
    return outcome, (stored.current_task_id, stored.version, dict(stored.context.items()))


def routing(failure: TaskFailure) -> ErrorDecision:
    return ErrorDecision.Route(NextAction.GoTo("apologise"))


def reporting(failure: TaskFailure) -> ErrorDecision:
    return ErrorDecision.Report("payment failed")


def retrying_once(failure: TaskFailure) -> ErrorDecision | None:
    return ErrorDecision.Retry() if failure.attempt < 3 else None


@pytest.mark.parametrize(
    ("handlers", "attempts"),
    [
        ((), [1, 2]),
        ((routing,), [1, 2]),
        ((reporting,), [1, 2]),
        ((retrying_once,), [1, 2, 3]),
    ],
    ids=["no-handler", "another-handler-routes", "another-handler-reports", "another-retries"],
)
async def test_the_outcome_is_the_one_without_the_plugin(events, handlers, attempts):
    without = await step(error_handlers=handlers, plugins=False)

    with_plugin = await step(error_handlers=handlers)

    assert with_plugin == without
    assert [event["tags"]["flowcore.attempt"] for event in events] == [str(a) for a in attempts]


async def test_a_step_that_fails_nowhere_sends_nothing(events):
    @task("fine")
    def fine(ctx: Context) -> TaskResult:
        return TaskResult("ok", NextAction.End)

    runner = FlowRunner(GraphBuilder("fine").add_task(fine).build(), InMemorySessionStorage())
    await runner.create_session("s")

    assert (await runner.run("s")).status == ExecutionStatus.Completed
    assert events == []


async def test_route_to_sends_a_failed_task_to_the_fallback_after_its_last_attempt(events):
    flowcore_sentry.configure(route_to="apologise")

    result, stored = await step()

    assert result.status == ExecutionStatus.Paused(  # type: ignore[attr-defined]
        "apologise", "Task requested jump to specific task"
    )
    assert stored == ("apologise", 2, {})  # the failed attempts' changes discarded
    assert [event["tags"]["flowcore.attempt"] for event in events] == ["1", "2"]
    assert events[-1]["breadcrumbs"]["values"][-1]["message"] == (
        "task 'charge' attempt 1 failed (ConnectionError); retrying in 0 s"
    )


async def test_route_to_a_mapping_routes_the_tasks_it_names_only(events):
    flowcore_sentry.configure(route_to={"ship": "apologise"})

    result, _ = await step()

    assert result == "Task 'charge' failed: card declined"
    assert len(events) == 2


async def test_routing_applies_without_sentry_too():
    flowcore_sentry.configure(route_to="apologise")

    result, stored = await step()

    assert result.status.next_task_id == "apologise"  # type: ignore[attr-defined]
    assert stored[0] == "apologise"


async def test_a_fallback_that_fails_is_not_routed_to_itself(events):
    @task("apologise")
    def failing_apology(ctx: Context) -> TaskResult:
        raise RuntimeError("no words")

    flowcore_sentry.configure(route_to="apologise")
    graph = GraphBuilder("g").add_task(failing_apology).build()
    runner = FlowRunner(graph, InMemorySessionStorage())
    await runner.create_session("s")

    with pytest.raises(TaskExecutionFailed, match="no words"):
        await runner.run("s")
    assert len(events) == 1


async def test_a_handler_before_the_plugin_decides_first(events):
    flowcore_sentry.configure(route_to="apologise")

    result, _ = await step(error_handlers=[reporting])

    assert result.status == ExecutionStatus.Error("payment failed")  # type: ignore[attr-defined]
    assert len(events) == 2


async def test_with_send_context_and_route_to_each_attempt_is_still_one_event(init_sentry):
    events = init_sentry().events
    flowcore_sentry.configure(send_context=True, route_to="apologise")

    result, _ = await step()

    assert result.status.next_task_id == "apologise"  # type: ignore[attr-defined]
    assert [event["tags"]["flowcore.attempt"] for event in events] == ["1", "2"]
    assert events[-1]["extra"]["charged"] is True


async def test_a_sentry_client_that_fails_to_send_never_breaks_the_step(caplog):
    class BrokenTransport(sentry_sdk.Transport):
        def capture_envelope(self, envelope: Any) -> None:
            raise OSError("disk full")

    sentry_sdk.init(dsn=DSN, transport=BrokenTransport(), default_integrations=False)
    flowcore_sentry.configure(route_to={"ship": "apologise"}, send_context=True)
    without = await step(plugins=False)

    with caplog.at_level(logging.ERROR, logger="flowcore_sentry"):
        with_plugin = await step()

    assert with_plugin == without
    assert "could not report the failure of task 'charge' (attempt 2)" in caplog.text
