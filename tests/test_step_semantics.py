"""One test per row of the step table: what each NextAction does to the session."""

from __future__ import annotations

import pytest

from flowcore import ExecutionResult, ExecutionStatus, NextAction, TaskNotFound

from .helpers import AsyncStep, Step, graph_of, runner_for

CONTINUING = "Task completed, continuing to next task"
NO_EDGE = "No outgoing edge found from current task"
JUMP = "Task requested jump to specific task"
BACK = "Task requested to go back to previous task"


async def start(graph):
    runner = runner_for(graph)
    session = await runner.create_session("s1")
    return runner, session.id


@pytest.mark.parametrize("step_class", [Step, AsyncStep])
async def test_continue_with_an_edge_moves_on_and_pauses(step_class):
    runner, sid = await start(graph_of(step_class("a"), step_class("b"), edges=[("a", "b")]))

    result = await runner.run(sid)

    assert result == ExecutionResult("a done", ExecutionStatus.Paused("b", CONTINUING))
    stored = await runner.storage.get(sid)
    assert stored.current_task_id == "b"
    assert stored.context.get("trail") == ["a"]  # b did not run yet
    assert stored.history == ["a"]


async def test_continue_without_an_edge_stays_put():
    runner, sid = await start(graph_of(Step("a")))

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.Paused("a", NO_EDGE)
    assert (await runner.storage.get(sid)).current_task_id == "a"


async def test_continue_and_execute_runs_the_next_task_in_the_same_call():
    graph = graph_of(
        Step("a", NextAction.ContinueAndExecute),
        Step("b", NextAction.ContinueAndExecute),
        Step("c", NextAction.WaitForInput, response="c asks"),
        edges=[("a", "b"), ("b", "c")],
    )
    runner, sid = await start(graph)

    result = await runner.run(sid)

    assert result == ExecutionResult("c asks", ExecutionStatus.WaitingForInput)
    stored = await runner.storage.get(sid)
    assert stored.context.get("trail") == ["a", "b", "c"]
    assert stored.current_task_id == "c"
    assert stored.history == ["a", "b"]


async def test_continue_and_execute_without_an_edge_stays_put():
    runner, sid = await start(graph_of(Step("a", NextAction.ContinueAndExecute)))

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.Paused("a", NO_EDGE)
    stored = await runner.storage.get(sid)
    assert stored.current_task_id == "a"
    assert stored.history == []


async def test_wait_for_input_keeps_the_task_current():
    runner, sid = await start(
        graph_of(Step("a", NextAction.WaitForInput), Step("b"), edges=[("a", "b")])
    )

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.WaitingForInput
    assert (await runner.storage.get(sid)).current_task_id == "a"


async def test_end_records_completion():
    runner, sid = await start(graph_of(Step("a", NextAction.End, response="bye")))

    result = await runner.run(sid)

    assert result == ExecutionResult("bye", ExecutionStatus.Completed)
    stored = await runner.storage.get(sid)
    assert stored.is_completed
    assert stored.current_task_id == "a"


async def test_goto_a_known_task_jumps_there():
    graph = graph_of(Step("a", NextAction.GoTo("c")), Step("b"), Step("c"), edges=[("a", "b")])
    runner, sid = await start(graph)

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.Paused("c", JUMP)
    stored = await runner.storage.get(sid)
    assert stored.current_task_id == "c"
    assert stored.history == ["a"]


async def test_goto_the_current_task_appends_no_history():
    runner, sid = await start(graph_of(Step("a", NextAction.GoTo("a"))))

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.Paused("a", JUMP)
    stored = await runner.storage.get(sid)
    assert stored.current_task_id == "a"
    assert stored.history == []


async def test_goto_an_unknown_task_raises_and_stores_nothing():
    runner, sid = await start(graph_of(Step("a", NextAction.GoTo("nowhere"))))

    with pytest.raises(TaskNotFound, match="nowhere") as caught:
        await runner.run(sid)

    assert caught.value.task_id == "nowhere"
    stored = await runner.storage.get(sid)
    assert stored.version == 1
    assert stored.current_task_id == "a"
    assert "trail" not in stored.context


async def test_go_back_returns_to_the_previous_task():
    graph = graph_of(Step("a"), Step("b", NextAction.GoBack), edges=[("a", "b")])
    runner, sid = await start(graph)
    await runner.run(sid)  # a -> b

    result = await runner.run(sid)  # b goes back

    assert result.status == ExecutionStatus.Paused("a", BACK)
    stored = await runner.storage.get(sid)
    assert stored.current_task_id == "a"
    assert stored.history == []  # popped, nothing appended


async def test_go_back_without_history_waits_for_input():
    runner, sid = await start(graph_of(Step("a", NextAction.GoBack)))

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.WaitingForInput
    assert (await runner.storage.get(sid)).current_task_id == "a"


async def test_history_keeps_the_last_hundred_tasks_left():
    # a GoTo chain through 150 tasks, one per step
    tasks = [Step(f"t{i}", NextAction.GoTo(f"t{i + 1}")) for i in range(150)]
    tasks.append(Step("t150", NextAction.GoBack))
    runner, sid = await start(graph_of(*tasks))
    for _ in range(150):
        await runner.run(sid)

    stored = await runner.storage.get(sid)
    assert stored.current_task_id == "t150"
    assert stored.history == [f"t{i}" for i in range(50, 150)]

    result = await runner.run(sid)
    assert result.status == ExecutionStatus.Paused("t149", BACK)


async def test_status_message_is_set_from_the_result_even_to_none():
    graph = graph_of(Step("a", status="working"), Step("b"), edges=[("a", "b")])
    runner, sid = await start(graph)

    await runner.run(sid)
    assert (await runner.storage.get(sid)).status_message == "working"

    await runner.run(sid)
    assert (await runner.storage.get(sid)).status_message is None


async def test_result_is_stamped_with_the_task_id():
    seen = []

    class Spy(Step):
        def run(self, ctx):
            result = super().run(ctx)
            seen.append(result)
            return result

    graph = graph_of(Spy("a"))
    runner, sid = await start(graph)
    await runner.run(sid)

    assert seen[0].task_id == "a"


async def test_an_unknown_current_task_raises_task_not_found():
    graph = graph_of(Step("a"), edges=[("a", "ghost")])  # Graph does not check edges
    runner, sid = await start(graph)

    result = await runner.run(sid)
    assert result.status == ExecutionStatus.Paused("ghost", CONTINUING)

    with pytest.raises(TaskNotFound, match="ghost"):
        await runner.run(sid)


async def test_an_edge_back_to_the_same_task_adds_no_history():
    runner, sid = await start(graph_of(Step("poll"), edges=[("poll", "poll")]))

    result = await runner.run(sid)

    assert result.status == ExecutionStatus.Paused("poll", CONTINUING)
    assert (await runner.storage.get(sid)).history == []
