"""FlowRunner: sessions, resuming with context_updates, completion, atomic steps."""

from __future__ import annotations

import pytest

from flowcore import (
    Context,
    ContextError,
    ExecutionLimitExceeded,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    GraphError,
    InMemorySessionStorage,
    NextAction,
    SerializationError,
    SessionConflict,
    SessionNotFound,
    Task,
    TaskExecutionFailed,
    TaskNotFound,
    TaskResult,
    task,
)

from .helpers import Fails, Step, graph_of, runner_for


class AskName(Task):
    id = "ask_name"

    def run(self, ctx: Context) -> TaskResult:
        name = ctx.get("name")
        if name is None:
            return TaskResult("What is your name?", NextAction.WaitForInput)
        ctx.add_user_message(name)
        return TaskResult(f"Hello, {name}", NextAction.Continue)


async def test_resume_after_wait_for_input_with_context_updates():
    runner = runner_for(graph_of(AskName(), Step("next"), edges=[("ask_name", "next")]))
    session = await runner.create_session("chat-1")

    first = await runner.run("chat-1")
    assert first == ExecutionResult("What is your name?", ExecutionStatus.WaitingForInput)

    second = await runner.run("chat-1", context_updates={"name": "Ada"})
    assert second.response == "Hello, Ada"
    assert second.status.next_task_id == "next"

    stored = await runner.storage.get(session.id)
    assert stored.context.get("name") == "Ada"
    assert [m.content for m in stored.context.get_chat_history()] == ["Ada"]


async def test_create_session_starts_at_the_start_task_and_saves():
    graph = graph_of(Step("a"), Step("b"))
    runner = runner_for(graph)

    session = await runner.create_session(context={"user": "u1"})

    assert session.current_task_id == "a"
    assert session.graph_id == graph.id
    assert session.version == 1
    stored = await runner.storage.get(session.id)
    assert stored.context.get("user") == "u1"
    assert len(session.id) == 36  # a UUID


async def test_create_session_at_another_task_and_with_an_existing_id():
    runner = runner_for(graph_of(Step("a"), Step("b")))
    session = await runner.create_session("s", start_task="b")
    assert session.current_task_id == "b"

    with pytest.raises(SessionConflict, match="'s' already exists"):
        await runner.create_session("s")
    with pytest.raises(TaskNotFound, match="nope"):
        await runner.create_session("t", start_task="nope")


async def test_create_session_on_an_empty_graph_is_refused():
    runner = runner_for(graph_of())
    with pytest.raises(GraphError, match="no tasks"):
        await runner.create_session()


async def test_running_a_missing_session_raises_session_not_found():
    runner = runner_for(graph_of(Step("a")))
    with pytest.raises(SessionNotFound, match="'missing'") as caught:
        await runner.run("missing")
    assert caught.value.session_id == "missing"


async def test_a_completed_session_runs_nothing_and_saves_nothing():
    runner = runner_for(graph_of(Step("a", NextAction.End)))
    session = await runner.create_session()
    assert (await runner.run(session.id)).status == ExecutionStatus.Completed

    again = await runner.run(session.id, context_updates={"ignored": 1})

    assert again == ExecutionResult(None, ExecutionStatus.Completed)
    stored = await runner.storage.get(session.id)
    assert stored.version == 2  # created, then the one step that ended it
    assert stored.context.get("trail") == ["a"]
    assert "ignored" not in stored.context


async def test_a_failed_step_stores_nothing_of_itself():
    graph = graph_of(Step("a", NextAction.ContinueAndExecute), Fails("b"), edges=[("a", "b")])
    runner = runner_for(graph)
    session = await runner.create_session(context={"kept": 1})

    with pytest.raises(TaskExecutionFailed) as caught:
        await runner.run(session.id, context_updates={"update": "lost"})

    assert caught.value.task_id == "b"
    assert str(caught.value) == "Task 'b' failed: boom"
    assert isinstance(caught.value.__cause__, RuntimeError)
    stored = await runner.storage.get(session.id)
    assert stored.version == 1
    assert stored.current_task_id == "a"
    assert stored.history == []
    assert stored.context.to_dict() == {"kept": 1}
    assert stored.context.chat_history_len() == 0


async def test_a_graph_error_raised_by_a_task_is_wrapped_too():
    runner = runner_for(graph_of(Fails("a", TaskNotFound("x"))))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed, match="Task 'a' failed: ") as caught:
        await runner.run(session.id)
    assert isinstance(caught.value.__cause__, TaskNotFound)


@pytest.mark.parametrize("returned", [None, "text", NextAction.End, {"response": "x"}])
async def test_a_task_returning_something_else_fails_naming_the_type(returned):
    @task("odd")
    def odd(ctx):
        return returned

    runner = runner_for(graph_of(odd))
    session = await runner.create_session()

    with pytest.raises(TaskExecutionFailed, match=type(returned).__name__) as caught:
        await runner.run(session.id)
    assert caught.value.task_id == "odd"


async def test_an_async_task_returning_something_else_fails_too():
    @task("odd")
    async def odd(ctx):
        return 42

    runner = runner_for(graph_of(odd))
    session = await runner.create_session()
    with pytest.raises(TaskExecutionFailed, match="returned int, not a TaskResult"):
        await runner.run(session.id)


async def test_an_unstorable_value_fails_the_save_and_keeps_the_stored_session():
    class Lock:
        pass

    @task("keeps_lock")
    def keeps_lock(ctx):
        ctx.set("order", {"items": [1, 2, 3, Lock()]})
        return TaskResult.move_to_next()

    runner = runner_for(graph_of(keeps_lock))
    session = await runner.create_session(context={"before": True})

    with pytest.raises(SerializationError) as caught:
        await runner.run(session.id)

    assert "context['order']['items'][3]" in str(caught.value)
    assert "Lock" in str(caught.value)
    stored = await runner.storage.get(session.id)
    assert stored.version == 1
    assert stored.context.to_dict() == {"before": True}


async def test_chain_response_and_status_message_are_the_last_tasks():
    graph = graph_of(
        Step("a", NextAction.ContinueAndExecute, response="first", status="s1"),
        Step("b", NextAction.WaitForInput, response="last", status="s2"),
        edges=[("a", "b")],
    )
    runner = runner_for(graph)
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.response == "last"
    assert (await runner.storage.get(session.id)).status_message == "s2"


async def test_chain_stops_at_max_steps_before_running_one_more():
    looping = Step("loop", NextAction.ContinueAndExecute)
    graph = graph_of(looping, edges=[("loop", "loop")], max_steps=5)
    runner = runner_for(graph)
    session = await runner.create_session()

    with pytest.raises(ExecutionLimitExceeded, match="max_steps=5"):
        await runner.run(session.id)
    stored = await runner.storage.get(session.id)
    assert stored.version == 1
    assert "trail" not in stored.context


async def test_chain_of_exactly_max_steps_tasks_is_allowed():
    tasks = [Step(f"t{i}", NextAction.ContinueAndExecute) for i in range(4)]
    tasks.append(Step("t4", NextAction.End))
    graph = graph_of(*tasks, edges=[(f"t{i}", f"t{i + 1}") for i in range(4)], max_steps=5)
    runner = runner_for(graph)
    session = await runner.create_session()

    assert (await runner.run(session.id)).status == ExecutionStatus.Completed
    stored = await runner.storage.get(session.id)
    assert stored.context.get("trail") == ["t0", "t1", "t2", "t3", "t4"]


async def test_max_steps_none_allows_long_chains():
    tasks = [Step(f"t{i}", NextAction.ContinueAndExecute) for i in range(300)]
    tasks.append(Step("end", NextAction.End))
    edges = [(f"t{i}", f"t{i + 1}") for i in range(299)] + [("t299", "end")]
    runner = runner_for(graph_of(*tasks, edges=edges, max_steps=None))
    session = await runner.create_session()

    assert (await runner.run(session.id)).status == ExecutionStatus.Completed


async def test_execute_session_works_without_a_runner():
    graph = graph_of(Step("a"), Step("b"), edges=[("a", "b")])
    from flowcore import Session

    session = Session.new_from_task("free", "a", context={"x": 1})
    result = await graph.execute_session(session)

    assert result.status.next_task_id == "b"
    assert session.current_task_id == "b"
    assert session.version == 0  # nothing saved


def test_runner_checks_its_arguments():
    with pytest.raises(TypeError, match="Graph"):
        FlowRunner("graph", InMemorySessionStorage())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SessionStorage"):
        FlowRunner(graph_of(Step("a")), {})  # type: ignore[arg-type]
    runner = FlowRunner(graph_of(Step("a")), InMemorySessionStorage())
    assert runner.graph.id == "test"
    assert isinstance(runner.storage, InMemorySessionStorage)


@pytest.mark.parametrize("updates", [[], [("k", 1)], "k=1"])
async def test_context_updates_that_are_not_a_mapping_are_refused(updates):
    runner = runner_for(graph_of(Step("a")))
    session = await runner.create_session()

    with pytest.raises(ContextError, match="context_updates must be a mapping"):
        await runner.run(session.id, context_updates=updates)
    assert (await runner.storage.get(session.id)).version == 1
