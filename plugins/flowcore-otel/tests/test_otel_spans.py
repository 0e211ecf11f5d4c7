"""The spans of a step: the tree, their attributes, failures, retries and error handlers'
decisions, and how they nest in the application's own spans."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from otel_telemetry import chain, pausing

from flowcore import (
    Context,
    ErrorDecision,
    ExecutionStatus,
    FanOutTask,
    InMemorySessionStorage,
    NextAction,
    RetryPolicy,
    SessionConflict,
    SessionNotFound,
    TaskExecutionFailed,
    TaskFailure,
    TaskResult,
    emit,
    task,
)


@task("intake")
def intake(ctx: Context) -> TaskResult:
    ctx.set("claim", "C-1")
    return TaskResult("received", NextAction.ContinueAndExecute)


@task("review")
async def review(ctx: Context) -> TaskResult:
    return TaskResult("under review", NextAction.WaitForInput)


def claims() -> object:
    return chain("claims", intake, review, edges=[("intake", "review")])


async def test_a_step_is_a_run_span_with_load_each_task_and_save_under_it(telemetry):
    runner = telemetry.runner(claims())
    await runner.create_session("claim-1")
    telemetry.exporter.clear()

    await runner.run("claim-1")

    run = telemetry.one("flowcore.run")
    assert run.parent is None
    assert run.kind == SpanKind.INTERNAL
    assert telemetry.tree(run) == [
        "flowcore.run",
        [
            ["flowcore.load", []],
            ["flowcore.task", []],
            ["flowcore.task", []],
            ["flowcore.save", []],
        ],
    ]
    assert run.instrumentation_scope is not None
    assert run.instrumentation_scope.name == "flowcore_otel"


async def test_the_run_span_says_which_session_graph_and_task_then_the_status_and_version(
    telemetry,
):
    runner = telemetry.runner(claims())
    await runner.create_session("claim-1")

    result = await runner.run("claim-1")

    run = telemetry.one("flowcore.run")
    assert dict(run.attributes or {}) == {
        "flowcore.session_id": "claim-1",
        "flowcore.graph_id": "claims",
        "flowcore.task_id": "intake",  # where the step started
        "flowcore.status": "WaitingForInput",
        "flowcore.version": 2,
    }
    assert result.version == 2
    assert run.status.status_code == StatusCode.UNSET


async def test_each_task_span_says_its_task_attempt_and_outcome(telemetry):
    runner = telemetry.runner(claims())
    await runner.create_session("claim-1")

    await runner.run("claim-1")

    first, second = telemetry.named("flowcore.task")
    assert dict(first.attributes or {}) == {
        "flowcore.task_id": "intake",
        "flowcore.attempt": 1,
        "flowcore.outcome": "ContinueAndExecute",
    }
    assert dict(second.attributes or {}) == {
        "flowcore.task_id": "review",
        "flowcore.attempt": 1,
        "flowcore.outcome": "WaitForInput",
    }
    assert first.end_time <= second.start_time


async def test_load_and_save_spans_carry_the_blob_size_and_time_the_backend_took(telemetry):
    class SlowStorage(InMemorySessionStorage):
        async def get(self, session_id):
            await asyncio.sleep(0.02)
            return await super().get(session_id)

        async def save(self, session):
            await asyncio.sleep(0.03)
            await super().save(session)

    runner = telemetry.runner(claims(), SlowStorage())
    await runner.create_session("claim-1", context={"note": "x" * 1000})
    telemetry.exporter.clear()

    await runner.run("claim-1")

    run = telemetry.one("flowcore.run")
    load, save = telemetry.one("flowcore.load"), telemetry.one("flowcore.save")
    assert dict(load.attributes).keys() == {"flowcore.blob_size"}
    assert 1000 < load.attributes["flowcore.blob_size"] < save.attributes["flowcore.blob_size"]
    for span, seconds in ((load, 0.02), (save, 0.03)):
        assert seconds <= (span.end_time - span.start_time) / 1e9 < seconds + 0.5
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time


async def test_creating_a_session_is_a_save_span_naming_the_session(telemetry):
    runner = telemetry.runner(claims())

    await runner.create_session("claim-1")

    save = telemetry.one("flowcore.save")
    assert save.parent is None
    assert save.attributes is not None
    assert save.attributes["flowcore.session_id"] == "claim-1"
    assert save.attributes["flowcore.graph_id"] == "claims"
    assert save.attributes["flowcore.blob_size"] > 0


async def test_a_run_inside_the_applications_current_span_nests_under_it(telemetry):
    runner = telemetry.runner(claims())
    await runner.create_session("claim-1")

    with telemetry.app_tracer().start_as_current_span("POST /claims/{id}/run") as request:
        await runner.run("claim-1")

    run = telemetry.one("flowcore.run")
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    assert run.context.trace_id == request.get_span_context().trace_id


async def test_after_a_run_the_applications_span_is_current_again(telemetry):
    runner = telemetry.runner(claims())
    await runner.create_session("claim-1")

    with telemetry.app_tracer().start_as_current_span("request") as request:
        await runner.run("claim-1")
        assert trace.get_current_span() is request
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_spans_a_task_opens_nest_under_its_task_span(telemetry):
    app = telemetry.app_tracer()

    @task("ask_model")
    async def ask_model(ctx: Context) -> TaskResult:
        with app.start_as_current_span("llm.chat"):
            await asyncio.sleep(0)
        return TaskResult("an answer", NextAction.End)

    runner = telemetry.runner(chain("chat", ask_model))
    await runner.create_session("chat-1")

    await runner.run("chat-1")

    assert telemetry.tree(telemetry.one("flowcore.run"))[1][1] == [
        "flowcore.task",
        [["llm.chat", []]],
    ]


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(None, id="inline"),  # a plain def runs inline...
        pytest.param(5, id="in-its-own-thread"),  # ...or, with a timeout, in a thread
    ],
)
async def test_a_plain_task_nests_its_spans_too(telemetry, timeout):
    app = telemetry.app_tracer()

    @task("lookup", timeout=timeout)
    def lookup(ctx: Context) -> TaskResult:
        with app.start_as_current_span("db.query"):
            pass
        return TaskResult("found", NextAction.End)

    runner = telemetry.runner(chain("lookups", lookup))
    await runner.create_session("l-1")

    await runner.run("l-1")

    [query] = telemetry.named("db.query")
    assert query.parent is not None
    assert query.parent.span_id == telemetry.one("flowcore.task").context.span_id


async def test_a_run_inside_a_task_nests_under_that_task(telemetry):
    inner = telemetry.runner(chain("inner", review))
    app = telemetry.app_tracer()

    @task("delegate")
    async def delegate(ctx: Context) -> TaskResult:
        await inner.run("inner-1")
        with app.start_as_current_span("after-inner"):
            pass
        return TaskResult("delegated", NextAction.End)

    outer = telemetry.runner(chain("outer", delegate))
    await inner.create_session("inner-1")
    await outer.create_session("outer-1")
    telemetry.exporter.clear()

    await outer.run("outer-1")

    outer_run = next(
        s for s in telemetry.named("flowcore.run") if s.attributes["flowcore.graph_id"] == "outer"
    )
    assert telemetry.tree(outer_run) == [
        "flowcore.run",
        [
            ["flowcore.load", []],
            [
                "flowcore.task",
                [
                    [
                        "flowcore.run",
                        [["flowcore.load", []], ["flowcore.task", []], ["flowcore.save", []]],
                    ],
                    ["after-inner", []],
                ],
            ],
            ["flowcore.save", []],
        ],
    ]


async def test_fan_out_children_are_task_spans_under_the_fan_outs(telemetry):
    left = pausing("left", 0.01, "l", NextAction.Continue)
    right = pausing("right", 0.01, "r", NextAction.Continue)
    runner = telemetry.runner(chain("fan", FanOutTask("both", [left, right])))
    await runner.create_session("f-1")

    await runner.run("f-1")

    fan = next(
        s for s in telemetry.named("flowcore.task") if s.attributes["flowcore.task_id"] == "both"
    )
    children = telemetry.children(fan)
    assert sorted(child.attributes["flowcore.task_id"] for child in children) == ["left", "right"]
    assert all(child.name == "flowcore.task" for child in children)
    assert telemetry.children(telemetry.one("flowcore.run"))[1] == fan


async def test_a_failed_task_is_an_exception_event_and_an_error_on_its_span_and_the_run(
    telemetry,
):
    @task("charge")
    def charge(ctx: Context) -> TaskResult:
        raise ConnectionError("card service unreachable")

    runner = telemetry.runner(chain("shop", charge))
    await runner.create_session("order-1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("order-1")

    attempt = telemetry.one("flowcore.task")
    assert attempt.attributes["flowcore.outcome"] == "failed"
    assert attempt.status.status_code == StatusCode.ERROR
    assert attempt.status.description == "Task 'charge' failed: card service unreachable"
    [event] = attempt.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ConnectionError"  # what the task raised
    assert event.attributes["exception.message"] == "card service unreachable"
    assert "raise ConnectionError" in event.attributes["exception.stacktrace"]

    run = telemetry.one("flowcore.run")
    assert run.attributes["flowcore.status"] == "failed"
    assert "flowcore.version" not in run.attributes
    assert run.status.status_code == StatusCode.ERROR
    assert run.events[0].attributes["exception.type"] == "flowcore.TaskExecutionFailed"
    assert len(telemetry.named("flowcore.save")) == 1  # create_session's: the step saved nothing


async def test_a_timed_out_task_records_the_timeout(telemetry):
    @task("slow", timeout=0.01)
    async def slow(ctx: Context) -> TaskResult:
        await asyncio.sleep(1)
        return TaskResult("never")

    runner = telemetry.runner(chain("slow", slow))
    await runner.create_session("s-1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("s-1")

    attempt = telemetry.one("flowcore.task")
    assert attempt.status.description == "Task 'slow' timed out after 0.01s"
    assert attempt.events[0].attributes["exception.type"] == "TimeoutError"


async def test_each_retry_is_a_span_of_its_own_starting_after_the_delay(telemetry):
    calls = []

    @task("flaky", retry=RetryPolicy(max_attempts=3, initial_delay=0.02, jitter=False))
    def flaky(ctx: Context) -> TaskResult:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"reset {len(calls)}")
        return TaskResult("ok", NextAction.End)

    runner = telemetry.runner(chain("retries", flaky))
    await runner.create_session("r-1")

    await runner.run("r-1")

    attempts = telemetry.named("flowcore.task")
    assert [
        (a.attributes["flowcore.attempt"], a.attributes["flowcore.outcome"]) for a in attempts
    ] == [
        (1, "retried"),
        (2, "retried"),
        (3, "End"),
    ]
    assert [a.status.status_code for a in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [a.events[0].attributes["exception.message"] for a in attempts[:2]] == [
        "reset 1",
        "reset 2",
    ]
    run = telemetry.one("flowcore.run")
    assert all(a.parent.span_id == run.context.span_id for a in attempts)
    first, second, _ = attempts
    assert (second.start_time - first.end_time) / 1e9 >= 0.02 - 0.001  # the delay between
    assert run.status.status_code == StatusCode.UNSET


async def test_an_error_handlers_decision_is_an_event_on_the_attempt_it_decided(telemetry):
    def to_fallback(failure: TaskFailure) -> ErrorDecision:
        return ErrorDecision.Route(NextAction.GoTo("apologise"))

    @task("charge")
    def charge(ctx: Context) -> TaskResult:
        raise ConnectionError("card declined")

    @task("apologise")
    def apologise(ctx: Context) -> TaskResult:
        return TaskResult("sorry", NextAction.End)

    runner = telemetry.runner(chain("shop", charge, apologise), error_handlers=[to_fallback])
    await runner.create_session("order-1")

    result = await runner.run("order-1")

    assert result.status == ExecutionStatus.Paused(
        "apologise", "Task requested jump to specific task"
    )
    attempt = telemetry.one("flowcore.task")
    assert attempt.attributes["flowcore.outcome"] == "routed"
    assert attempt.status.status_code == StatusCode.ERROR
    decided, failed = sorted(attempt.events, key=lambda e: e.name, reverse=True)
    assert decided.name == "flowcore.error_handled"
    assert dict(decided.attributes) == {
        "flowcore.handler": f"{__name__}.{to_fallback.__qualname__}",
        "flowcore.decision": "ErrorDecision.Route(NextAction.GoTo('apologise'))",
    }
    assert failed.name == "exception"
    assert telemetry.one("flowcore.run").status.status_code == StatusCode.UNSET


async def test_a_reported_failure_ends_the_run_span_in_error(telemetry):
    @task("charge")
    def charge(ctx: Context) -> TaskResult:
        raise ConnectionError("card declined")

    runner = telemetry.runner(
        chain("shop", charge),
        error_handlers=[lambda failure: ErrorDecision.Report("payment failed")],
    )
    await runner.create_session("order-1")

    result = await runner.run("order-1")

    assert result.status == ExecutionStatus.Error("payment failed")
    attempt = telemetry.one("flowcore.task")
    assert attempt.attributes["flowcore.outcome"] == "reported"
    run = telemetry.one("flowcore.run")
    assert run.attributes["flowcore.status"] == "Error"
    assert run.attributes["flowcore.version"] == 2  # saved, the failed task still current
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "payment failed"


async def test_a_handlers_retry_starts_the_next_attempt_span(telemetry):
    calls = []

    def once_more(failure: TaskFailure) -> ErrorDecision | None:
        return ErrorDecision.Retry() if failure.attempt == 1 else None

    @task("flaky")
    def flaky(ctx: Context) -> TaskResult:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return TaskResult("ok", NextAction.End)

    runner = telemetry.runner(chain("retries", flaky), error_handlers=[once_more])
    await runner.create_session("r-1")

    await runner.run("r-1")

    first, second = telemetry.named("flowcore.task")
    assert first.attributes["flowcore.outcome"] == "retried"
    assert [e.name for e in first.events] == ["flowcore.error_handled", "exception"]
    assert first.events[0].attributes["flowcore.decision"] == "ErrorDecision.Retry(delay=0.0)"
    assert (second.attributes["flowcore.attempt"], second.attributes["flowcore.outcome"]) == (
        2,
        "End",
    )
    assert second.events == ()


async def test_a_run_of_an_unknown_session_is_a_run_span_in_error(telemetry):
    runner = telemetry.runner(claims())

    with pytest.raises(SessionNotFound):
        await runner.run("nobody")

    run = telemetry.one("flowcore.run")
    assert telemetry.children(run) == []
    assert "flowcore.task_id" not in run.attributes
    assert run.status.status_code == StatusCode.ERROR
    assert run.events[0].attributes["exception.type"] == "flowcore.SessionNotFound"


async def test_a_lost_compare_and_set_race_is_a_run_span_in_error(telemetry):
    storage = InMemorySessionStorage()

    runner = telemetry.runner(chain("race", pausing("slow", 0.01)), storage)
    await runner.create_session("s-1")

    outcomes = await asyncio.gather(runner.run("s-1"), runner.run("s-1"), return_exceptions=True)

    assert sum(isinstance(o, SessionConflict) for o in outcomes) == 1
    statuses = sorted(s.attributes["flowcore.status"] for s in telemetry.named("flowcore.run"))
    assert statuses == ["WaitingForInput", "failed"]
    assert len(telemetry.named("flowcore.save")) == 2  # create_session's, and the winner's


async def test_a_completed_session_is_a_run_span_with_its_load_only(telemetry):
    @task("last")
    def last(ctx: Context) -> TaskResult:
        return TaskResult("bye", NextAction.End)

    runner = telemetry.runner(chain("done", last))
    await runner.create_session("d-1")
    await runner.run("d-1")
    telemetry.exporter.clear()

    await runner.run("d-1")

    run = telemetry.one("flowcore.run")
    assert telemetry.tree(run) == ["flowcore.run", [["flowcore.load", []]]]
    assert run.attributes["flowcore.status"] == "Completed"


async def test_a_streamed_step_is_traced_as_a_run_is(telemetry):
    @task("answer")
    async def answer(ctx: Context) -> TaskResult:
        for word in ("one ", "two"):
            emit(word)
            await asyncio.sleep(0)
        return TaskResult("one two", NextAction.WaitForInput)

    runner = telemetry.runner(chain("chat", answer))
    await runner.create_session("c-1")
    telemetry.exporter.clear()

    with telemetry.app_tracer().start_as_current_span("POST /stream") as request:
        events = [event async for event in runner.stream("c-1")]

    assert events[-1].status == ExecutionStatus.WaitingForInput
    run = telemetry.one("flowcore.run")
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    assert telemetry.tree(run) == [
        "flowcore.run",
        [["flowcore.load", []], ["flowcore.task", []], ["flowcore.save", []]],
    ]
    assert run.attributes["flowcore.status"] == "WaitingForInput"


async def test_a_stream_its_consumer_leaves_is_a_cancelled_task_and_run(telemetry):
    started = asyncio.Event()

    @task("answer")
    async def answer(ctx: Context) -> TaskResult:
        emit("first")
        started.set()
        await asyncio.sleep(10)
        return TaskResult("never")

    runner = telemetry.runner(chain("chat", answer))
    await runner.create_session("c-1")
    telemetry.exporter.clear()

    async with contextlib.aclosing(runner.stream("c-1")) as events:
        async for event in events:
            if event.kind == "output":
                break

    attempt = telemetry.one("flowcore.task")
    assert attempt.attributes["flowcore.outcome"] == "cancelled"
    run = telemetry.one("flowcore.run")
    assert run.attributes["flowcore.status"] == "failed"
    assert run.status.status_code == StatusCode.ERROR
    assert telemetry.named("flowcore.save") == []


async def test_concurrent_steps_each_get_a_tree_of_their_own(telemetry):
    runner = telemetry.runner(chain("many", pausing("wait", 0.01, "ok")))
    for i in range(10):
        await runner.create_session(f"s-{i}")
    telemetry.exporter.clear()

    await asyncio.gather(*(runner.run(f"s-{i}") for i in range(10)))

    runs = telemetry.named("flowcore.run")
    assert len(runs) == 10
    for run in runs:
        assert telemetry.tree(run) == [
            "flowcore.run",
            [["flowcore.load", []], ["flowcore.task", []], ["flowcore.save", []]],
        ]
    assert len({run.context.trace_id for run in runs}) == 10
