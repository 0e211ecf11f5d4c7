"""Tracers: what a FlowRunner reports about each step, task, retry and save."""

from __future__ import annotations

import logging

import pytest

import flowcore
from flowcore import (
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    InMemorySessionStorage,
    LoggingTracer,
    NextAction,
    RetryPolicy,
    SessionNotFound,
    TaskExecutionFailed,
    TaskResult,
    Tracer,
    task,
)
from flowcore.codec import encode_session, register_type, unregister_type

from .helpers import Fails, Step, graph_of


class Recorder(Tracer):
    """Records every event it is given, as (method name, event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def run_started(self, event):
        self.events.append(("run_started", event))

    def session_loaded(self, event):
        self.events.append(("session_loaded", event))

    def task_started(self, event):
        self.events.append(("task_started", event))

    def task_retrying(self, event):
        self.events.append(("task_retrying", event))

    def error_handled(self, event):
        self.events.append(("error_handled", event))

    def task_ended(self, event):
        self.events.append(("task_ended", event))

    def session_saved(self, event):
        self.events.append(("session_saved", event))

    def run_ended(self, event):
        self.events.append(("run_ended", event))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list:
        return [event for n, event in self.events if n == name]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def two_task_chain() -> flowcore.Graph:
    return graph_of(
        Step("intake", NextAction.ContinueAndExecute, status="recorded"),
        Step("review", NextAction.WaitForInput),
        edges=[("intake", "review")],
    )


async def test_a_step_reports_run_session_and_task_events_in_order(recorder):
    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[recorder])
    await runner.create_session("claim-1")
    recorder.events.clear()

    result = await runner.run("claim-1")

    assert recorder.names() == [
        "run_started",
        "session_loaded",
        "task_started",
        "task_ended",
        "task_started",
        "task_ended",
        "session_saved",
        "run_ended",
    ]
    started, loaded, *_, saved, ended = (event for _, event in recorder.events)
    assert (started.session_id, started.graph_id) == ("claim-1", "test")
    assert (loaded.version, loaded.task_id) == (1, "intake")
    stored = await runner.storage.get("claim-1")
    assert (saved.version, saved.task_id) == (2, "review")
    assert saved.blob_size == len(encode_session(stored))
    assert ended.result == result
    assert (ended.status, ended.task_id, ended.error) == ("WaitingForInput", "review", None)
    assert ended.duration >= 0


async def test_task_events_carry_the_outcome_of_each_task(recorder):
    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[recorder])
    await runner.create_session("claim-1")

    await runner.run("claim-1")

    intake, review = recorder.of("task_ended")
    assert intake.task_id == "intake"
    assert intake.next_action == NextAction.ContinueAndExecute
    assert (intake.status, intake.status_message) == ("ContinueAndExecute", "recorded")
    assert intake.result.response == "intake done"
    assert (intake.error, intake.attempts) == (None, 1)
    assert intake.duration_ms == intake.duration * 1000 >= 0
    assert (review.task_id, review.status) == ("review", "WaitForInput")


async def test_every_retry_attempt_is_reported(recorder):
    attempts = []

    @task("flaky", retry=RetryPolicy(max_attempts=3, initial_delay=0.001, jitter=False))
    def flaky(ctx):
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"reset {len(attempts)}")
        return TaskResult("ok", NextAction.End)

    runner = FlowRunner(graph_of(flaky), InMemorySessionStorage(), tracers=[recorder])
    await runner.create_session("s1")

    await runner.run("s1")

    retries = recorder.of("task_retrying")
    assert [(r.attempt, r.delay, str(r.error)) for r in retries] == [
        (1, 0.001, "Task 'flaky' failed: reset 1"),
        (2, 0.002, "Task 'flaky' failed: reset 2"),
    ]
    [ended] = recorder.of("task_ended")
    assert (ended.attempts, ended.status, ended.error) == (3, "End", None)


async def test_a_failing_step_reports_the_error_and_saves_nothing(recorder):
    runner = FlowRunner(graph_of(Fails("charge")), InMemorySessionStorage(), tracers=[recorder])
    await runner.create_session("s1")
    recorder.events.clear()

    with pytest.raises(TaskExecutionFailed):
        await runner.run("s1")

    assert "session_saved" not in recorder.names()
    [task_ended] = recorder.of("task_ended")
    assert isinstance(task_ended.error, TaskExecutionFailed)
    assert (task_ended.status, task_ended.result, task_ended.next_action) == ("failed", None, None)
    [run_ended] = recorder.of("run_ended")
    assert run_ended.error is task_ended.error
    assert (run_ended.status, run_ended.result, run_ended.task_id) == ("failed", None, "charge")


async def test_an_unknown_session_reports_a_run_that_never_loaded(recorder):
    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[recorder])

    with pytest.raises(SessionNotFound):
        await runner.run("nobody")

    assert recorder.names() == ["run_started", "run_ended"]
    [ended] = recorder.of("run_ended")
    assert ended.task_id is None
    assert isinstance(ended.error, SessionNotFound)


async def test_a_completed_session_is_loaded_and_nothing_else(recorder):
    runner = FlowRunner(graph_of(Step("last", NextAction.End)), InMemorySessionStorage())
    await runner.create_session("s1")
    await runner.run("s1")
    traced = FlowRunner(runner.graph, runner.storage, tracers=[recorder])

    assert await traced.run("s1") == ExecutionResult(None, ExecutionStatus.Completed)
    assert recorder.names() == ["run_started", "session_loaded", "run_ended"]


async def test_creating_a_session_reports_its_first_save(recorder):
    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[recorder])

    session = await runner.create_session("s1", context={"amount": 100})

    [saved] = recorder.of("session_saved")
    assert (saved.session_id, saved.version, saved.task_id) == ("s1", 1, "intake")
    assert saved.blob_size == len(encode_session(session))


async def test_a_tracer_that_raises_is_logged_and_the_step_goes_on(caplog):
    class Broken(Tracer):
        def task_ended(self, event):
            raise ValueError("tracer bug")

    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[Broken()])
    await runner.create_session("s1")

    result = await runner.run("s1")

    assert result.status == ExecutionStatus.WaitingForInput
    [record, _] = [r for r in caplog.records if r.name == "flowcore.tracing"]
    assert record.getMessage().endswith("Broken raised in task_ended; the step goes on")
    assert record.exc_info[1].args == ("tracer bug",)


async def test_any_object_with_tracer_methods_is_a_tracer():
    seen = []

    class Minimal:  # no flowcore.Tracer base: only the methods it wants
        def task_started(self, event):
            seen.append(event.task_id)

    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[Minimal()])
    await runner.create_session("s1")

    await runner.run("s1")

    assert seen == ["intake", "review"]


def test_a_tracer_must_have_plain_event_methods():
    class Nothing(Tracer):
        pass

    class Async(Tracer):
        async def task_ended(self, event):
            pass

    graph, storage = two_task_chain(), InMemorySessionStorage()
    with pytest.raises(TypeError, match="Nothing is not a tracer: it has none of the methods"):
        FlowRunner(graph, storage, tracers=[Nothing()])
    with pytest.raises(TypeError, match="task_ended is async; tracer methods are called inline"):
        FlowRunner(graph, storage, tracers=[Async()])


# -- LoggingTracer -------------------------------------------------------------------------------


async def test_the_logging_tracer_is_switched_on_in_one_line(caplog):
    caplog.set_level(logging.INFO, logger="flowcore")
    runner = FlowRunner(two_task_chain(), InMemorySessionStorage())
    await runner.create_session("claim-1")

    flowcore.register_plugin(flowcore.LoggingTracer())
    await runner.run("claim-1")

    records = [r for r in caplog.records if r.name == "flowcore"]
    assert [r.getMessage().split(" in ")[0] for r in records] == [
        "task intake of session claim-1: ContinueAndExecute",
        "task review of session claim-1: WaitForInput",
        "step of session claim-1: WaitingForInput",
    ]
    task_record = records[0]
    assert (task_record.session_id, task_record.task_id) == ("claim-1", "intake")
    assert (task_record.status, task_record.graph_id) == ("ContinueAndExecute", "test")
    assert task_record.duration_ms >= 0
    assert (records[2].task_id, records[2].status) == ("review", "WaitingForInput")


async def test_the_logging_tracer_logs_failures_and_retries_as_warnings(caplog):
    attempts = []

    @task("flaky", retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=False))
    def flaky(ctx):
        attempts.append(1)
        raise ConnectionError(f"reset {len(attempts)}")

    runner = FlowRunner(
        graph_of(flaky), InMemorySessionStorage(), tracers=[LoggingTracer("claims.flow")]
    )
    await runner.create_session("s1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("s1")

    assert [(r.levelname, r.status, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "retrying",
            "task flaky of session s1: attempt 1 failed, retrying in 0 s: "
            "Task 'flaky' failed: reset 1",
        ),
        (
            "WARNING",
            "failed",
            caplog.records[1].getMessage(),  # the duration varies
        ),
        ("WARNING", "failed", caplog.records[2].getMessage()),
    ]
    assert (
        caplog.records[1]
        .getMessage()
        .startswith("task flaky of session s1: failed (Task 'flaky' failed: reset 2) in ")
    )
    assert (
        caplog.records[2]
        .getMessage()
        .startswith(
            "step of session s1: failed (TaskExecutionFailed: Task 'flaky' failed: reset 2) in "
        )
    )
    assert {r.name for r in caplog.records} == {"claims.flow"}


async def test_a_fan_outs_children_are_traced_inside_it():
    @task("fraud")
    async def fraud(ctx):
        return TaskResult("clean", NextAction.Continue)

    @task("coverage")
    def coverage(ctx):
        return TaskResult("covered", NextAction.End, "within limits")

    recorder = Recorder()
    graph = graph_of(flowcore.FanOutTask("checks", [fraud, coverage]))
    runner = FlowRunner(graph, InMemorySessionStorage(), tracers=[recorder])
    session = await runner.create_session()

    await runner.run(session.id)

    tasks = [
        (name, event.task_id)
        for name, event in recorder.events
        if name in ("task_started", "task_ended")
    ]
    assert tasks[0] == ("task_started", "checks")
    assert tasks[-1] == ("task_ended", "checks")
    assert sorted(tasks[1:-1]) == [
        ("task_ended", "coverage"),
        ("task_ended", "fraud"),
        ("task_started", "coverage"),
        ("task_started", "fraud"),
    ]
    ended = {e.task_id: e for name, e in recorder.events if name == "task_ended"}
    assert ended["coverage"].result.status_message == "within limits"
    assert ended["fraud"].result.response == "clean"


async def test_without_task_tracers_a_fan_out_runs_its_children_untraced():
    class RunsOnly(Tracer):
        def __init__(self):
            self.runs = 0

        def run_ended(self, event):
            self.runs += 1

    tracer = RunsOnly()
    graph = graph_of(flowcore.FanOutTask("checks", [Step("a"), Step("b")]))
    runner = FlowRunner(graph, InMemorySessionStorage(), tracers=[tracer])
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.response == "FanOutTask 'checks' completed 2 child task(s)"
    assert tracer.runs == 1


class Counted:
    """A context value whose codec encoder counts how often a session holding it is encoded."""

    encoded = 0

    def __init__(self, n: int) -> None:
        self.n = n


def _encode_counted(value: Counted) -> int:
    Counted.encoded += 1
    return value.n


@pytest.fixture
def counted():
    register_type(Counted, _encode_counted, Counted, name="tests.Counted")
    Counted.encoded = 0
    yield Counted
    unregister_type(Counted)


async def test_load_and_save_events_cost_no_encoding_of_their_own(recorder, counted):
    runner = FlowRunner(two_task_chain(), InMemorySessionStorage(), tracers=[recorder])
    await runner.create_session("s1", context={"v": Counted(7)})
    counted.encoded = 0

    await runner.run("s1")

    # One encode: the save's. The events take the sizes the backend read and wrote.
    assert counted.encoded == 1
    [loaded] = recorder.of("session_loaded")
    [_created, saved] = recorder.of("session_saved")
    stored = await runner.storage.get("s1")
    assert saved.blob_size == len(encode_session(stored))
    assert loaded.blob_size == _created.blob_size
    assert loaded.duration > 0
    assert saved.duration > 0


async def test_a_backend_that_stores_sessions_its_own_way_still_reports_sizes(recorder):
    class OwnWay(flowcore.SessionStorage):
        """Keeps the session objects themselves: nothing goes through the codec."""

        def __init__(self) -> None:
            self.sessions: dict[str, flowcore.Session] = {}

        async def get(self, session_id):
            return self.sessions.get(session_id)

        async def save(self, session):
            session.version += 1
            self.sessions[session.id] = session

        async def delete(self, session_id):
            self.sessions.pop(session_id, None)

    runner = FlowRunner(two_task_chain(), OwnWay(), tracers=[recorder])
    await runner.create_session("s1")
    await runner.run("s1")

    [loaded] = recorder.of("session_loaded")
    saved = recorder.of("session_saved")[-1]
    session = await runner.storage.get("s1")
    assert saved.blob_size == len(encode_session(session))
    assert loaded.blob_size > 0
