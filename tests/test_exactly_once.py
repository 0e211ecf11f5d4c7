"""Exactly-once steps (request_id), guards (expect_task / expect_version) and the whole story
of a step in its ExecutionResult."""

from __future__ import annotations

import asyncio
import pickle

import msgpack
import pytest

from flowcore import (
    Context,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    SerializationError,
    SessionConflict,
    SessionMoved,
    StorageError,
    Task,
    TaskRecord,
    TaskResult,
)
from flowcore._session import RECENT_REQUESTS
from flowcore.codec import decode_session, encode_session

from .helpers import Step, graph_of


class Question(Task):
    """Takes ctx['answer'] as the answer to its question, counts its runs, and waits."""

    def __init__(self, id: str, runs: list[str]) -> None:
        self.id = id
        self.runs = runs

    def run(self, ctx: Context) -> TaskResult:
        self.runs.append(self.id)
        answer = ctx.remove("answer")
        ctx.set(f"{self.id}.answer", answer)
        return TaskResult(f"{self.id} got {answer}", NextAction.Continue)


class Slow(Question):
    """A Question that yields to the event loop first, so concurrent runs all load first."""

    async def run(self, ctx: Context) -> TaskResult:  # type: ignore[override]
        await asyncio.sleep(0.01)
        return super().run(ctx)


def survey(runs: list[str], task: type[Question] = Question) -> FlowRunner:
    graph = graph_of(
        task("q1", runs), task("q2", runs), task("q3", runs), edges=[("q1", "q2"), ("q2", "q3")]
    )
    return FlowRunner(graph, InMemorySessionStorage(), plugins=False)


async def test_a_repeated_request_id_replays_the_recorded_result_and_runs_nothing():
    runs: list[str] = []
    runner = survey(runs)
    await runner.create_session("s")

    first = await runner.run("s", context_updates={"answer": "yes"}, request_id="r-1")
    again = await runner.run("s", context_updates={"answer": "yes"}, request_id="r-1")

    assert runs == ["q1"]
    assert first.replayed is False
    assert again.replayed is True
    assert again == first
    assert (again.session_id, again.version, again.current_task_id) == ("s", 2, "q2")
    assert (
        again.tasks == first.tasks == (TaskRecord("q1", "q1 got yes", None, NextAction.Continue),)
    )
    stored = await runner.storage.get("s")
    assert stored.version == 2
    assert stored.context.get("q2.answer") is None  # the duplicate answered nothing


async def test_a_replay_answers_first_whatever_happened_to_the_session_since():
    runs: list[str] = []
    runner = survey(runs)
    await runner.create_session("s")
    first = await runner.run("s", context_updates={"answer": "a"}, request_id="r-1")
    await runner.run("s", context_updates={"answer": "b"}, request_id="r-2")

    # the session is at q3 now, version 3: the replay is of the step as it was
    again = await runner.run("s", request_id="r-1", expect_task="q1", expect_version=1)

    assert again.replayed
    assert (again.response, again.version, again.current_task_id) == ("q1 got a", 2, "q2")
    assert again.status == first.status
    assert runs == ["q1", "q2"]


async def test_a_new_request_id_runs_the_next_step():
    runs: list[str] = []
    runner = survey(runs)
    await runner.create_session("s")

    await runner.run("s", context_updates={"answer": "a"}, request_id="r-1")
    second = await runner.run("s", context_updates={"answer": "b"}, request_id="r-2")

    assert runs == ["q1", "q2"]
    assert second.replayed is False
    assert second.response == "q2 got b"


async def test_only_the_most_recent_request_ids_are_remembered():
    runner = FlowRunner(
        graph_of(Step("loop", NextAction.GoTo("loop"))), InMemorySessionStorage(), plugins=False
    )
    await runner.create_session("s")
    for i in range(RECENT_REQUESTS + 1):
        await runner.run("s", request_id=f"r-{i}")
    stored = await runner.storage.get("s")
    blob_size = len(encode_session(stored))

    # r-0 is forgotten: it runs again; the newest ones are still answered
    assert (await runner.run("s", request_id=f"r-{RECENT_REQUESTS}")).replayed is True
    assert (await runner.run("s", request_id="r-0")).replayed is False
    for i in range(RECENT_REQUESTS * 3):
        await runner.run("s", request_id=f"more-{i}")
    stored = await runner.storage.get("s")
    assert len(stored._requests) == RECENT_REQUESTS
    assert len(encode_session(stored)) < blob_size + 200 + 50 * RECENT_REQUESTS


async def test_concurrent_duplicates_apply_the_step_once_and_all_get_the_same_result():
    runs: list[str] = []
    runner = survey(runs, Slow)
    await runner.create_session("s")

    results = await asyncio.gather(
        *(runner.run("s", context_updates={"answer": "yes"}, request_id="r-1") for _ in range(20))
    )

    assert all(r == results[0] for r in results)
    assert {(r.version, r.current_task_id) for r in results} == {(2, "q2")}
    assert [r.replayed for r in results].count(False) == 1
    assert runs == ["q1"]  # the duplicates in this process waited for the first copy
    stored = await runner.storage.get("s")
    assert (stored.version, stored.current_task_id) == (2, "q2")
    assert stored.context.get("q1.answer") == "yes"
    assert stored.context.get("q2.answer") is None


class SharedStorage(InMemorySessionStorage):
    """Another storage object on the same sessions, as a second process would have."""

    def __init__(self, other: InMemorySessionStorage) -> None:
        self._rows = other._rows
        self._waiting = other._waiting
        self._lock = other._lock


async def test_a_duplicate_that_loses_the_race_returns_the_winners_result():
    runs: list[str] = []
    first = survey(runs, Slow)
    second = FlowRunner(first.graph, SharedStorage(first.storage), plugins=False)
    await first.create_session("s")

    results = await asyncio.gather(
        first.run("s", context_updates={"answer": "yes"}, request_id="r-1"),
        second.run("s", context_updates={"answer": "yes"}, request_id="r-1"),
    )

    assert runs == ["q1", "q1"]  # both ran the task; one step was stored
    assert results[0] == results[1]
    assert sorted(r.replayed for r in results) == [False, True]
    assert results[0].version == results[1].version == 2
    assert (await first.storage.get("s")).version == 2


async def test_when_the_first_copy_fails_the_waiting_duplicates_run_for_themselves():
    calls: list[int] = []

    class FailsOnce(Task):
        id = "q1"

        async def run(self, ctx: Context) -> TaskResult:
            calls.append(1)
            await asyncio.sleep(0.01)
            if len(calls) == 1:
                raise RuntimeError("the model timed out")
            return TaskResult("ok", NextAction.WaitForInput)

    runner = FlowRunner(graph_of(FailsOnce()), InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")

    outcomes = await asyncio.gather(
        *(runner.run("s", request_id="r-1") for _ in range(3)), return_exceptions=True
    )

    failed = [o for o in outcomes if isinstance(o, BaseException)]
    answered = [o for o in outcomes if isinstance(o, ExecutionResult)]
    assert [type(e).__name__ for e in failed] == ["TaskExecutionFailed"]
    assert len(answered) == 2
    assert answered[0] == answered[1] == ExecutionResult("ok", ExecutionStatus.WaitingForInput)
    assert (await runner.storage.get("s")).version == 2


async def test_a_cancelled_duplicate_leaves_the_first_copy_running():
    runs: list[str] = []
    runner = survey(runs, Slow)
    await runner.create_session("s")

    leader = asyncio.ensure_future(runner.run("s", context_updates={"answer": "a"}, request_id="r"))
    await asyncio.sleep(0)
    duplicate = asyncio.ensure_future(runner.run("s", request_id="r"))
    await asyncio.sleep(0)
    duplicate.cancel()

    result = await leader
    with pytest.raises(asyncio.CancelledError):
        await duplicate
    assert result.response == "q1 got a"
    assert runs == ["q1"]


async def test_a_run_that_loses_the_race_to_another_request_still_conflicts():
    runs: list[str] = []
    runner = survey(runs, Slow)
    other = FlowRunner(runner.graph, SharedStorage(runner.storage), plugins=False)
    await runner.create_session("s")

    outcomes = await asyncio.gather(
        runner.run("s", context_updates={"answer": "a"}, request_id="r-a"),
        other.run("s", context_updates={"answer": "b"}, request_id="r-b"),
        return_exceptions=True,
    )

    assert sorted(type(o).__name__ for o in outcomes) == ["ExecutionResult", "SessionConflict"]
    stored = await runner.storage.get("s")
    assert stored.version == 2


async def test_a_loser_whose_session_was_deleted_meanwhile_conflicts():
    storage = InMemorySessionStorage()

    class DeletesItsSession(Task):
        id = "q1"

        async def run(self, ctx: Context) -> TaskResult:
            await storage.delete("s")
            return TaskResult.move_to_next()

    runner = FlowRunner(graph_of(DeletesItsSession(), Step("q2")), storage, plugins=False)
    await runner.create_session("s")
    runner.graph.add_edge("q1", "q2")

    with pytest.raises(SessionConflict, match="deleted"):
        await runner.run("s", request_id="r-1")


@pytest.mark.parametrize(
    ("request_id", "error", "match"),
    [
        ("", ValueError, "1 to 256 characters"),
        ("x" * 257, ValueError, "got 257"),
        (42, TypeError, "request_id must be a str, got int"),
        (b"r-1", TypeError, "got bytes"),
    ],
)
async def test_a_bad_request_id_is_refused_before_anything_runs(request_id, error, match):
    runs: list[str] = []
    runner = survey(runs)
    await runner.create_session("s")

    with pytest.raises(error, match=match):
        await runner.run("s", context_updates={"answer": "x"}, request_id=request_id)
    with pytest.raises(error, match=match):
        runner.stream("s", request_id=request_id)

    assert runs == []
    assert (await runner.storage.get("s")).version == 1


async def test_a_response_that_is_no_text_cannot_be_recorded_and_nothing_is_stored():
    class Numeric(Task):
        id = "n"

        def run(self, ctx: Context) -> TaskResult:
            ctx.set("touched", True)
            return TaskResult(42, NextAction.WaitForInput)  # type: ignore[arg-type]

    runner = FlowRunner(graph_of(Numeric()), InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")

    with pytest.raises(SerializationError, match="the response of task 'n' is int: 42"):
        await runner.run("s", request_id="r-1")

    stored = await runner.storage.get("s")
    assert stored.version == 1
    assert "touched" not in stored.context
    assert (await runner.run("s")).response == 42  # without a request id nothing is recorded


async def test_a_response_that_is_not_valid_unicode_cannot_be_recorded():
    runner = FlowRunner(
        graph_of(Step("t", NextAction.WaitForInput, response="half \ud800 a pair")),
        InMemorySessionStorage(),
        plugins=False,
    )
    await runner.create_session("s")

    with pytest.raises(SerializationError, match="request_id 'r-1' holds text that is not valid"):
        await runner.run("s", request_id="r-1")

    assert (await runner.storage.get("s")).version == 1


# -- guards -----------------------------------------------------------------------------------


async def test_an_answer_for_another_question_is_refused_and_nothing_runs():
    runs: list[str] = []
    runner = survey(runs)
    await runner.create_session("s")
    await runner.run("s", context_updates={"answer": "yes"}, expect_task="q1")

    with pytest.raises(SessionMoved) as caught:
        await runner.run("s", context_updates={"answer": "yes"}, expect_task="q1")

    error = caught.value
    assert isinstance(error, SessionConflict)
    assert (error.session_id, error.what, error.expected, error.found) == ("s", "task", "q1", "q2")
    assert "is at task 'q2', not at task 'q1'" in str(error)
    assert runs == ["q1"]
    stored = await runner.storage.get("s")
    assert stored.version == 2
    assert "answer" not in stored.context


async def test_a_stale_version_is_refused_and_the_right_one_runs():
    runs: list[str] = []
    runner = survey(runs)
    session = await runner.create_session("s")

    first = await runner.run("s", context_updates={"answer": "a"}, expect_version=session.version)
    with pytest.raises(SessionMoved, match="is at version 2, not at version 1") as caught:
        await runner.run("s", context_updates={"answer": "b"}, expect_version=1)
    second = await runner.run(
        "s", context_updates={"answer": "b"}, expect_version=first.version, expect_task="q2"
    )

    assert (caught.value.expected, caught.value.found) == (1, 2)
    assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args
    assert second.version == 3
    assert runs == ["q1", "q2"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"expect_version": "1"}, "expect_version must be None or an int"),
        ({"expect_version": True}, "got bool"),
        ({"expect_task": 1}, "expect_task must be None or a task id"),
    ],
)
async def test_a_guard_of_the_wrong_type_is_refused(options, match):
    runs: list[str] = []
    runner = survey(runs)
    await runner.create_session("s")

    with pytest.raises(TypeError, match=match):
        await runner.run("s", **options)

    assert runs == []


async def test_guards_are_checked_before_a_completed_session_answers():
    runner = FlowRunner(graph_of(Step("end", NextAction.End)), InMemorySessionStorage())
    await runner.create_session("s")
    await runner.run("s")

    with pytest.raises(SessionMoved):
        await runner.run("s", expect_version=1)
    done = await runner.run("s", expect_version=2, expect_task="end")
    assert done == ExecutionResult(None, ExecutionStatus.Completed)
    assert (done.version, done.current_task_id, done.tasks) == (2, "end", ())


# -- the whole story of a step ----------------------------------------------------------------


async def test_a_chain_reports_every_task_that_ran():
    graph = graph_of(
        Step("classify", NextAction.ContinueAndExecute, response="Category: billing."),
        Step("route", NextAction.ContinueAndExecute, response=None, status="routed"),
        Step("ask", NextAction.WaitForInput, response="Did that help?"),
        edges=[("classify", "route"), ("route", "ask")],
    )
    runner = FlowRunner(graph, InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")

    result = await runner.run("s")

    assert result == ExecutionResult("Did that help?", ExecutionStatus.WaitingForInput)
    assert [t.response for t in result.tasks] == [
        "Category: billing.",
        "route done",
        "Did that help?",
    ]
    assert result.tasks[1] == TaskRecord(
        "route", "route done", "routed", NextAction.ContinueAndExecute
    )
    assert (result.session_id, result.version, result.current_task_id) == ("s", 2, "ask")
    assert result.replayed is False
    assert repr(result) == (
        "ExecutionResult(response='Did that help?', status=ExecutionStatus.WaitingForInput)"
    )


def test_the_new_fields_take_no_part_in_equality_and_survive_pickling():
    record = TaskRecord("a", "hi", None, NextAction.GoTo("b"))
    result = ExecutionResult(
        "hi",
        ExecutionStatus.Completed,
        session_id="s",
        version=3,
        current_task_id="a",
        tasks=[record],
        replayed=True,
    )

    assert result == ExecutionResult("hi", ExecutionStatus.Completed)
    assert hash(result) == hash(ExecutionResult("hi", ExecutionStatus.Completed))
    copy = pickle.loads(pickle.dumps(result))
    assert (copy.session_id, copy.version, copy.current_task_id, copy.tasks, copy.replayed) == (
        "s",
        3,
        "a",
        (record,),
        True,
    )


def test_a_task_record_is_a_frozen_value():
    record = TaskRecord("a", "hi", "ok", NextAction.End)

    assert record == TaskRecord("a", "hi", "ok", NextAction.End)
    assert record != TaskRecord("a", "hi", "ok", NextAction.Continue)
    assert hash(record) == hash(TaskRecord("a", "hi", "ok", NextAction.End))
    assert repr(record) == (
        "TaskRecord(task_id='a', response='hi', status_message='ok', next_action=NextAction.End)"
    )
    match record:
        case TaskRecord(task_id="a", next_action=NextAction.End):
            pass
        case _:
            pytest.fail("TaskRecord does not match by field")
    with pytest.raises(AttributeError):
        record.response = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError, match="next_action must be a NextAction"):
        TaskRecord("a", next_action="End")  # type: ignore[arg-type]


# -- the record in the blob -------------------------------------------------------------------


async def test_a_recorded_result_survives_storage_with_every_kind_of_status():
    from datetime import datetime, timedelta, timezone

    at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    graph = graph_of(
        Step("a", NextAction.GoTo("b"), status="jumped"),
        Step("b", NextAction.WaitUntil(at)),
        Step("c", NextAction.WaitUntil(timedelta(0))),
        Step("d", NextAction.End),
        edges=[("b", "c"), ("c", "d")],
    )
    runner = FlowRunner(graph, InMemorySessionStorage(), plugins=False)
    await runner.create_session("s")
    first = [await runner.run("s", request_id="r-a")]
    first.append(await runner.run("s", request_id="r-b"))
    session = await runner.storage.get("s")
    session.wake_at = None  # wake it early
    await runner.storage.save(session)
    first.append(await runner.run("s", request_id="r-c"))
    first.append(await runner.run("s", request_id="r-d"))

    again = [await runner.run("s", request_id=f"r-{x}") for x in "abcd"]

    assert again == first
    assert [r.tasks for r in again] == [r.tasks for r in first]
    assert again[1].status == ExecutionStatus.Scheduled("c", at)
    assert all(r.replayed for r in again)


def _blob_with_extras(extras: object) -> bytes:
    record = ["default", "t", None, False, [], 1000, {}, [], extras]
    return b"\x01" + msgpack.packb(record)


@pytest.mark.parametrize(
    ("extras", "match"),
    [
        ({"surprise": 1}, "a field this flowcore does not know, 'surprise'"),
        ({"wake_at": "soon"}, "wake_at is not an int"),
        ({"wake_at": 2**62}, "malformed"),
        ({"requests": "r-1"}, "request record"),
        ({"requests": [["r-1"]] * 40}, "request record is not a short array"),
        ([1, 2], "extra fields are not a map"),
    ],
)
def test_a_malformed_timer_or_request_record_is_a_storage_error(extras, match):
    with pytest.raises(StorageError, match=f"Session 'bad' could not be decoded: .*{match}"):
        decode_session(_blob_with_extras(extras), session_id="bad", version=1)


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ([2, "t", None, [9, None, None], []], "status of kind 9"),
        ([2, "t", None, [0, None, None], [["a", None, None, 99]]], "kind 99"),
        ([2, "t", None, [0, None, None], [["a", 5, None, 0]]], "not a str"),
        ([2, "t", None, [0, None, None], [["a", None, None, [6, 2**62]]]], "out of range"),
        ([2, "t"], "not an array of 5 fields"),
        ("2", "not an array of 5 fields"),
    ],
)
async def test_a_malformed_recorded_result_is_a_storage_error_when_asked_for(result, match):
    storage = InMemorySessionStorage()
    entry = ["r-1", msgpack.packb(result)]
    storage._rows["bad"] = (1, _blob_with_extras({"requests": [entry, ["r-x", b"\xc1"]]}))
    runner = FlowRunner(graph_of(Step("t")), storage, plugins=False)

    with pytest.raises(StorageError, match=f"Session 'bad' .*request 'r-1' is malformed .*{match}"):
        await runner.run("bad", request_id="r-1")

    with pytest.raises(StorageError, match="request 'r-x' is malformed"):
        await runner.run("bad", request_id="r-x")  # not msgpack at all
    assert (await runner.run("bad", request_id="r-2")).version == 2  # other requests still run


@pytest.mark.parametrize(
    "entry", [["r-1", 2], ["r-1", b"", "extra"], "r-1", [3, b""]], ids=["int", "three", "str", "id"]
)
async def test_a_malformed_record_entry_is_a_storage_error_for_a_step_with_a_request_id(entry):
    storage = InMemorySessionStorage()
    storage._rows["bad"] = (1, _blob_with_extras({"requests": [entry]}))
    runner = FlowRunner(graph_of(Step("t", NextAction.GoTo("t"))), storage, plugins=False)

    with pytest.raises(StorageError, match=r"Session 'bad' .*not \[request id, result\]"):
        await runner.run("bad", request_id="r-2")

    assert (await runner.run("bad")).version == 2  # a step without a request id runs


def test_a_plain_session_is_stored_as_before():
    from flowcore import Session

    session = Session.new_from_task("s", "t")
    record = msgpack.unpackb(encode_session(session)[1:])

    assert len(record) == 8
