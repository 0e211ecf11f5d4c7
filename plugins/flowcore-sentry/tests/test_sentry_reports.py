"""What reaches Sentry when a task fails: one event per failed attempt, its tags, the step's
tasks as breadcrumbs, and no context value unless the application asks for them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import flowcore_sentry
import pytest
import sentry_sdk
from sentry_sdk.scrubber import EventScrubber

from flowcore import (
    Context,
    FanOutTask,
    FlowRunner,
    GraphBuilder,
    InMemorySessionStorage,
    NextAction,
    RetryPolicy,
    TaskExecutionFailed,
    TaskResult,
    task,
)

SECRET = "ada.lovelace@example.org"
"""A context value that must not reach Sentry unless asked for."""


@task("receive")
def receive(ctx: Context) -> TaskResult:
    ctx.set("email", SECRET)
    return TaskResult("Received.", NextAction.ContinueAndExecute)


@task("check")
def check(ctx: Context) -> TaskResult:
    ctx.set("checked", True)
    return TaskResult(None, NextAction.ContinueAndExecute)


@task("charge", retry=RetryPolicy(max_attempts=3, initial_delay=0.0, jitter=False))
def charge(ctx: Context) -> TaskResult:
    ctx.set("charged", False)
    raise ConnectionError("card declined")


@task("pay")
def pay(ctx: Context) -> TaskResult:
    raise ConnectionError("card declined")


def shop(charge_task: Any = charge) -> Any:
    """receive -> check -> charge, run in one step (ContinueAndExecute); charge fails 3 times."""
    return (
        GraphBuilder("shop")
        .add_task(receive)
        .add_task(check)
        .add_task(charge_task)
        .add_edge("receive", "check")
        .add_edge("check", "charge")
        .build()
    )


async def new_runner(graph: Any, session_id: str = "order-1", **options: Any) -> FlowRunner:
    runner = FlowRunner(graph, InMemorySessionStorage(), **options)
    await runner.create_session(session_id)
    return runner


def tags(event: dict[str, Any]) -> dict[str, str]:
    return {key: value for key, value in event["tags"].items() if key.startswith("flowcore.")}


def crumbs(event: dict[str, Any]) -> list[str]:
    return [crumb["message"] for crumb in event["breadcrumbs"]["values"]]


async def test_each_failed_attempt_is_one_event_with_the_flowcore_tags(events):
    runner = await new_runner(shop())

    with pytest.raises(TaskExecutionFailed, match="Task 'charge' failed: card declined"):
        await runner.run("order-1")

    assert [tags(event) for event in events] == [
        {
            "flowcore.session_id": "order-1",
            "flowcore.graph_id": "shop",
            "flowcore.task_id": "charge",
            "flowcore.attempt": str(attempt),
        }
        for attempt in (1, 2, 3)
    ]
    first = events[0]
    assert [(e["type"], e["value"]) for e in first["exception"]["values"]] == [
        ("ConnectionError", "card declined"),
        ("TaskExecutionFailed", "Task 'charge' failed: card declined"),
    ]
    assert first["level"] == "error"
    assert first["contexts"]["flowcore"] == {
        "session_id": "order-1",
        "graph_id": "shop",
        "task_id": "charge",
        "attempt": 1,
        "timed_out": False,
    }


async def test_the_tasks_of_the_step_are_the_breadcrumbs(events):
    runner = await new_runner(shop())

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1")

    assert crumbs(events[2]) == [
        "step of session 'order-1' (graph 'shop') started",
        "task 'receive' ran: ContinueAndExecute",
        "task 'check' ran: ContinueAndExecute",
        "task 'charge' attempt 1 failed (ConnectionError); retrying in 0 s",
        "task 'charge' attempt 2 failed (ConnectionError); retrying in 0 s",
    ]
    check_crumb = events[2]["breadcrumbs"]["values"][2]
    assert check_crumb["category"] == "flowcore.task"
    assert check_crumb["data"]["task_id"] == "check"
    assert check_crumb["data"]["status"] == "ContinueAndExecute"
    assert check_crumb["data"]["attempts"] == 1


async def test_breadcrumbs_are_of_the_failing_step_only(events):
    @task("ask")
    def ask(ctx: Context) -> TaskResult:
        return TaskResult("Which card?", NextAction.Continue)

    graph = GraphBuilder("pay").add_task(ask).add_task(pay).add_edge("ask", "pay").build()
    runner = await new_runner(graph)
    await runner.run("order-1")  # a step of its own: ask

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1")

    (event,) = events
    assert crumbs(event) == ["step of session 'order-1' (graph 'pay') started"]


async def test_no_context_value_is_sent_by_default(events):
    runner = await new_runner(shop())
    await runner.storage.delete("order-1")
    await runner.create_session("order-1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1", context_updates={"card": "4111 1111 1111 1111"})

    assert len(events) == 3
    sent = json.dumps(events, default=str)
    assert SECRET not in sent
    assert "4111" not in sent
    # The task's own frame still shows its locals, the context itself hidden.
    frames = events[0]["exception"]["values"][0]["stacktrace"]["frames"]
    task_frame = next(frame for frame in frames if frame["function"] == "charge")
    assert task_frame["vars"] == {"ctx": "<flowcore.Context: values not sent>"}
    # flowcore's own frames show no locals (one holds the context, encoded).
    assert all("vars" not in frame for frame in frames if frame["module"].startswith("flowcore"))


async def test_context_values_when_asked_for_pass_the_clients_scrubbing(init_sentry):
    events = init_sentry().events
    flowcore_sentry.configure(send_context=True)
    runner = await new_runner(shop())

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1", context_updates={"password": "hunter2"})

    # The handler sees the last attempt with the context: its event carries the values; the
    # attempts the RetryPolicy retried are reported without them.
    assert [event.get("extra", {}).get("email") for event in events] == [None, None, SECRET]
    last = events[-1]["extra"]
    assert last["checked"] is True
    assert last["charged"] is False  # as the failed attempt left it
    assert last["password"] == "[Filtered]"  # Sentry's own event scrubber, by its deny list
    assert "hunter2" not in json.dumps(events, default=str)


async def test_a_recursive_scrubber_of_the_application_reaches_nested_values(init_sentry):
    events = init_sentry(event_scrubber=EventScrubber(recursive=True)).events
    flowcore_sentry.configure(send_context=True)
    runner = await new_runner(shop())

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1", context_updates={"login": {"token": "t0k3n", "user": "ada"}})

    assert events[-1]["extra"]["login"] == {"token": "[Filtered]", "user": "ada"}


async def test_send_context_with_keys_sends_those_values_only(init_sentry):
    events = init_sentry().events
    flowcore_sentry.configure(send_context=["checked", "absent"])
    runner = await new_runner(shop())

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1")

    assert events[-1]["extra"].get("checked") is True
    assert "email" not in events[-1]["extra"]
    assert "absent" not in events[-1]["extra"]
    assert SECRET not in json.dumps(events, default=str)


async def test_a_timeout_is_reported_as_timed_out(events):
    @task("slow", timeout=0.01)
    async def slow(ctx: Context) -> TaskResult:
        await asyncio.sleep(1)
        return TaskResult(None, NextAction.End)

    runner = await new_runner(GraphBuilder("slow").add_task(slow).build())

    with pytest.raises(TaskExecutionFailed, match=r"timed out after 0\.01s"):
        await runner.run("order-1")

    (event,) = events
    assert event["contexts"]["flowcore"]["timed_out"] is True
    assert tags(event)["flowcore.task_id"] == "slow"


async def test_a_task_that_returns_no_task_result_is_reported(events):
    @task("wrong")
    async def wrong(ctx: Context) -> Any:
        return "done"

    runner = await new_runner(GraphBuilder("wrong").add_task(wrong).build())

    with pytest.raises(TaskExecutionFailed, match="str"):
        await runner.run("order-1")

    (event,) = events
    assert event["exception"]["values"][-1]["type"] == "TaskExecutionFailed"


async def test_a_failed_child_of_a_fan_out_and_the_fan_out_are_each_reported(events):
    @task("quote_a")
    async def quote_a(ctx: Context) -> TaskResult:
        return TaskResult("12 EUR")

    @task("quote_b")
    async def quote_b(ctx: Context) -> TaskResult:
        raise LookupError("no quote")

    runner = await new_runner(
        GraphBuilder("quotes").add_task(FanOutTask("quotes", [quote_a, quote_b])).build()
    )

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1")

    assert sorted(tags(event)["flowcore.task_id"] for event in events) == ["quote_b", "quotes"]
    fan_out = next(e for e in events if tags(e)["flowcore.task_id"] == "quotes")
    assert "task 'quote_a' ran: Continue" in crumbs(fan_out)


async def test_a_streamed_step_is_reported_the_same(events):
    runner = await new_runner(shop())

    with pytest.raises(TaskExecutionFailed):
        async for _ in runner.stream("order-1"):
            pass

    assert [tags(event)["flowcore.attempt"] for event in events] == ["1", "2", "3"]
    assert "task 'check' ran: ContinueAndExecute" in crumbs(events[0])


async def test_a_run_inside_a_task_keeps_its_breadcrumbs_apart(events):
    inner_graph = GraphBuilder("inner").add_task(check).build()
    inner = await new_runner(inner_graph, "inner-1")

    @task("outer")
    async def outer(ctx: Context) -> TaskResult:
        await inner.run("inner-1")
        raise ValueError("after the inner run")

    runner = await new_runner(
        GraphBuilder("outer").add_task(receive).add_task(outer).add_edge("receive", "outer").build()
    )

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1")

    (event,) = events
    assert crumbs(event) == [
        "step of session 'order-1' (graph 'outer') started",
        "task 'receive' ran: ContinueAndExecute",
    ]


async def test_the_applications_own_capture_of_the_raised_failure_is_not_a_second_event(events):
    runner = await new_runner(GraphBuilder("pay").add_task(pay).build())

    try:
        await runner.run("order-1")
    except TaskExecutionFailed as failure:
        sentry_sdk.capture_exception(failure)  # what a web framework's integration does

    assert len(events) == 1  # Sentry's Dedupe integration: the same exception, already sent


async def test_ids_that_a_tag_cannot_hold_are_cut_and_kept_whole_in_the_context(events):
    session_id = "line one\nline two " + "x" * 300
    runner = await new_runner(GraphBuilder("pay").add_task(pay).build(), session_id)

    with pytest.raises(TaskExecutionFailed):
        await runner.run(session_id)

    (event,) = events
    tag = event["tags"]["flowcore.session_id"]
    assert len(tag) == 200
    assert "\n" not in tag
    assert tag.startswith("line one\\nline two xxx")
    assert event["contexts"]["flowcore"]["session_id"] == session_id
