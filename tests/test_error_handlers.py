"""Error handlers decide what a failed task becomes: raised (the default), retried, routed to
another task, or reported as ExecutionStatus.Error with the session saved."""

from __future__ import annotations

import asyncio

import pytest

import flowcore
from flowcore import (
    ErrorDecision,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    RetryPolicy,
    TaskExecutionFailed,
    TaskResult,
    Tracer,
    task,
)

from .helpers import Fails, Step, graph_of


def runner_with(*handlers, graph=None, **options) -> FlowRunner:
    graph = graph or graph_of(
        Fails("charge", ConnectionError("card network down")),
        Step("apologise", NextAction.WaitForInput),
        Step("done", NextAction.End),
        edges=[("charge", "done")],
    )
    return FlowRunner(graph, InMemorySessionStorage(), error_handlers=handlers, **options)


async def stored(runner: FlowRunner, session_id: str = "s1"):
    return await runner.storage.get(session_id)


async def test_without_a_decision_the_failure_is_raised_and_nothing_is_saved():
    runner = runner_with(lambda failure: None)  # a handler that passes
    await runner.create_session("s1", context={"amount": 100})

    with pytest.raises(TaskExecutionFailed, match="card network down"):
        await runner.run("s1", context_updates={"card": "4242"})

    session = await stored(runner)
    assert session.version == 1
    assert "card" not in session.context
    assert "written_by_failed_task" not in session.context


async def test_route_goes_on_as_if_the_task_returned_that_action():
    runner = runner_with(lambda failure: ErrorDecision.Route(NextAction.GoTo("apologise")))
    await runner.create_session("s1")

    result = await runner.run("s1", context_updates={"card": "4242"})

    assert result == ExecutionResult(
        None, ExecutionStatus.Paused("apologise", "Task requested jump to specific task")
    )
    session = await stored(runner)
    assert session.current_task_id == "apologise"
    assert session.history == ["charge"]
    assert session.status_message == "Task 'charge' failed: card network down"
    assert session.context.get("card") == "4242"  # the user's input is kept
    assert "written_by_failed_task" not in session.context  # the failed attempt's is not
    assert session.context.chat_history_len() == 0


async def test_route_can_set_the_response_and_status_and_end_the_session():
    runner = runner_with(
        lambda failure: ErrorDecision.Route(
            NextAction.End, response="Sorry, we could not charge you.", status_message="gave up"
        )
    )
    await runner.create_session("s1")

    result = await runner.run("s1")

    assert result == ExecutionResult("Sorry, we could not charge you.", ExecutionStatus.Completed)
    session = await stored(runner)
    assert (session.is_completed, session.status_message) == (True, "gave up")


async def test_report_saves_the_session_with_the_failed_task_still_current():
    runner = runner_with(lambda failure: ErrorDecision.Report())
    await runner.create_session("s1")

    result = await runner.run("s1", context_updates={"card": "4242"})

    message = "Task 'charge' failed: card network down"
    assert result == ExecutionResult(None, ExecutionStatus.Error(message))
    session = await stored(runner)
    assert (session.version, session.current_task_id) == (2, "charge")
    assert session.status_message == message
    assert session.context.get("card") == "4242"
    assert "written_by_failed_task" not in session.context
    match result.status:
        case ExecutionStatus.Error(message=text):
            assert text == message
        case _:
            pytest.fail("not an Error status")


async def test_a_reported_failure_keeps_the_work_of_the_chain_before_it():
    graph = graph_of(
        Step("intake", NextAction.ContinueAndExecute),
        Fails("charge"),
        edges=[("intake", "charge")],
    )
    runner = runner_with(lambda failure: ErrorDecision.Report("payment failed"), graph=graph)
    await runner.create_session("s1")

    result = await runner.run("s1")

    assert result.status == ExecutionStatus.Error("payment failed")
    session = await stored(runner)
    assert (session.current_task_id, session.history) == ("charge", ["intake"])
    assert session.context.get("trail") == ["intake"]
    assert session.status_message == "payment failed"


async def test_retry_runs_the_task_again_on_the_restored_context():
    attempts = []

    @task("charge")
    def charge(ctx):
        attempts.append(dict(ctx.items()))
        ctx.set("scribbled", len(attempts))
        if len(attempts) < 3:
            raise ConnectionError("busy")
        return TaskResult("charged", NextAction.End)

    def retry_twice(failure):
        return ErrorDecision.Retry() if failure.attempt < 3 else None

    runner = runner_with(retry_twice, graph=graph_of(charge))
    await runner.create_session("s1", context={"amount": 100})

    assert (await runner.run("s1")).response == "charged"
    assert attempts == [{"amount": 100}] * 3
    assert (await stored(runner)).context.get("scribbled") == 3


async def test_the_retry_policy_comes_first_then_the_handlers():
    attempts = []
    seen = []

    @task("charge", retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=False))
    def charge(ctx):
        attempts.append(1)
        raise ConnectionError("busy")

    def report(failure):
        seen.append(failure.attempt)
        return ErrorDecision.Report()

    runner = runner_with(report, graph=graph_of(charge))
    await runner.create_session("s1")

    result = await runner.run("s1")

    assert result.status == ExecutionStatus.Error("Task 'charge' failed: busy")
    assert (len(attempts), seen) == (2, [2])


async def test_handlers_are_asked_in_order_until_one_decides():
    asked = []

    def passes(failure):
        asked.append("passes")

    def decides(failure):
        asked.append("decides")
        return ErrorDecision.Report()

    def never_asked(failure):
        asked.append("never")

    runner = runner_with(passes, decides, never_asked)
    await runner.create_session("s1")

    await runner.run("s1")

    assert asked == ["passes", "decides"]


async def test_raise_stops_the_handlers_after_it():
    runner = runner_with(lambda f: ErrorDecision.Raise, lambda f: ErrorDecision.Report())
    await runner.create_session("s1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("s1")


async def test_a_runners_handlers_come_before_those_of_plugins():
    class ReportEverything:
        @flowcore.hookimpl
        def flowcore_register_error_handlers(self, register):
            register(lambda failure: ErrorDecision.Report("from the plugin"))

    flowcore.register_plugin(ReportEverything(), name="report-everything")
    own = runner_with(lambda failure: ErrorDecision.Report("from the runner"))
    plugin_only = runner_with()
    for runner in (own, plugin_only):
        await runner.create_session("s1")

    assert (await own.run("s1")).status.message == "from the runner"
    assert (await plugin_only.run("s1")).status.message == "from the plugin"


async def test_a_handler_sees_the_failure_and_may_be_async():
    failures = []
    seen_in_context = []

    async def inspect_then_report(failure):
        await asyncio.sleep(0)
        failures.append(failure)
        seen_in_context.append(failure.context.get("written_by_failed_task"))
        return ErrorDecision.Report()

    runner = runner_with(inspect_then_report)
    await runner.create_session("s1")

    await runner.run("s1")

    [failure] = failures
    assert (failure.session_id, failure.graph_id, failure.task_id) == ("s1", "test", "charge")
    assert failure.task is runner.graph.get_task("charge")
    assert isinstance(failure.error, TaskExecutionFailed)
    assert isinstance(failure.cause, ConnectionError)
    assert (failure.attempt, failure.timed_out) == (1, False)
    assert seen_in_context == [True]  # the context as the failed attempt left it


async def test_a_timeout_reaches_the_handler_as_a_timed_out_failure():
    failures = []

    @task("slow", timeout=0.01)
    async def slow(ctx):
        await asyncio.sleep(10)

    def report(failure):
        failures.append(failure)
        return ErrorDecision.Report()

    runner = runner_with(report, graph=graph_of(slow))
    await runner.create_session("s1")

    result = await runner.run("s1")

    assert result.status == ExecutionStatus.Error("Task 'slow' timed out after 0.01s")
    assert failures[0].timed_out


async def test_a_handler_must_return_a_decision_or_none():
    runner = runner_with(lambda failure: "retry")
    await runner.create_session("s1")

    with pytest.raises(TypeError, match="returned str: 'retry'; return an ErrorDecision"):
        await runner.run("s1")
    assert (await stored(runner)).version == 1


async def test_a_failing_edge_predicate_is_not_a_task_failure():
    graph = graph_of(Step("a"), Step("b"))
    graph.add_conditional_edge("a", lambda ctx: 1 / 0, "b", "b")
    runner = runner_with(lambda failure: ErrorDecision.Report(), graph=graph)
    await runner.create_session("s1")

    with pytest.raises(TaskExecutionFailed, match="edge predicate"):
        await runner.run("s1")


async def test_every_decision_is_reported_to_tracers():
    decisions = []

    class Decisions(Tracer):
        def error_handled(self, event):
            decisions.append((event.task_id, event.attempt, event.handler, event.decision))

    def retry_once(failure):
        return ErrorDecision.Retry(0.001) if failure.attempt == 1 else ErrorDecision.Report()

    runner = runner_with(retry_once, tracers=[Decisions()])
    await runner.create_session("s1")

    await runner.run("s1")

    assert decisions == [
        ("charge", 1, retry_once, ErrorDecision.Retry(0.001)),
        ("charge", 2, retry_once, ErrorDecision.Report()),
    ]


def test_decisions_compare_by_value_and_read_well():
    assert ErrorDecision.Retry(1) == ErrorDecision.Retry(1.0) != ErrorDecision.Retry(2)
    assert ErrorDecision.Route(NextAction.End) != ErrorDecision.Report()
    assert repr(ErrorDecision.Retry(0.5)) == "ErrorDecision.Retry(delay=0.5)"
    assert repr(ErrorDecision.Route(NextAction.GoTo("x"), response="sorry")) == (
        "ErrorDecision.Route(NextAction.GoTo('x'), response='sorry')"
    )
    assert repr(ErrorDecision.Report("down")) == "ErrorDecision.Report('down')"
    assert repr(ErrorDecision.Raise) == "ErrorDecision.Raise"
    match ErrorDecision.Route(NextAction.GoTo("fallback")):
        case ErrorDecision.Route(NextAction.GoTo(task_id=target)):
            assert target == "fallback"
        case _:
            pytest.fail("no match")
    with pytest.raises(ValueError, match="finite number >= 0"):
        ErrorDecision.Retry(-1)
    with pytest.raises(TypeError, match="Route needs a NextAction"):
        ErrorDecision.Route("fallback")  # type: ignore[arg-type]


def test_an_error_handler_must_be_callable():
    with pytest.raises(TypeError, match="an error handler must be callable"):
        runner_with("report")


class ReportPayments(flowcore.ErrorHandler):
    """Reports the failures of tasks whose id starts with "charge"; counts what it is asked."""

    def __init__(self) -> None:
        self.asked_about: list[str] = []

    def applies_to(self, task):
        self.asked_about.append(task.id)
        return task.id.startswith("charge")

    def handle(self, failure):
        return ErrorDecision.Report(f"payment problem: {failure.cause}")


async def test_an_error_handler_is_asked_once_per_task_whether_it_applies():
    handler = ReportPayments()
    graph = graph_of(
        Fails("charge", ConnectionError("down")), Fails("ship"), Step("done", NextAction.End)
    )
    runner = runner_with(handler, graph=graph)
    await runner.create_session("pay", start_task="charge")
    await runner.create_session("ship", start_task="ship")

    for _ in range(2):
        result = await runner.run("pay")
        assert result.status == ExecutionStatus.Error("payment problem: down")
    with pytest.raises(TaskExecutionFailed, match="boom"):  # not a task it applies to
        await runner.run("ship")

    assert handler.asked_about == ["charge", "ship"]


async def test_an_error_handler_is_a_plugin_for_every_runner():
    flowcore.register_plugin(ReportPayments())
    runner = runner_with()
    await runner.create_session("s1")

    assert (await runner.run("s1")).status == ExecutionStatus.Error(
        "payment problem: card network down"
    )
