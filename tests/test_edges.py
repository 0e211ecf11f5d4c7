"""The next task is picked after the task ran, on the context as the task left it."""

from __future__ import annotations

from flowcore import Context, ExecutionStatus, Task, TaskResult

from .helpers import Step, graph_of, runner_for


class SetsFlag(Task):
    id = "decide"

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("big", True)
        return TaskResult.move_to_next()


async def test_predicate_sees_what_the_task_wrote():
    graph = graph_of(SetsFlag(), Step("yes"), Step("no"))
    graph.add_conditional_edge("decide", lambda ctx: ctx.get("big", False), "yes", "no")
    runner = runner_for(graph)
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.status.next_task_id == "yes"


async def test_conditional_edge_wins_over_an_earlier_plain_edge():
    graph = graph_of(Step("a"), Step("plain"), Step("yes"), Step("no"))
    graph.add_edge("a", "plain")
    graph.add_conditional_edge("a", lambda ctx: True, "yes", "no")
    runner = runner_for(graph)
    session = await runner.create_session()

    result = await runner.run(session.id)

    assert result.status == ExecutionStatus.Paused("yes", "Task completed, continuing to next task")


async def test_when_every_predicate_is_false_the_first_plain_edge_wins():
    graph = graph_of(Step("a"), Step("plain"), Step("yes"), Step("no"))
    graph.add_edge("a", "plain")
    graph.add_conditional_edge("a", lambda ctx: False, "yes", "no")
    runner = runner_for(graph)
    session = await runner.create_session()

    assert (await runner.run(session.id)).status.next_task_id == "plain"


async def test_false_predicate_takes_the_no_branch():
    graph = graph_of(Step("a"), Step("yes"), Step("no"))
    graph.add_conditional_edge("a", lambda ctx: False, "yes", "no")
    runner = runner_for(graph)
    session = await runner.create_session()

    assert (await runner.run(session.id)).status.next_task_id == "no"


async def test_first_true_conditional_edge_wins():
    graph = graph_of(*(Step(x) for x in ["a", "y1", "n1", "y2", "n2"]))
    graph.add_conditional_edge("a", lambda ctx: False, "y1", "n1")
    graph.add_conditional_edge("a", lambda ctx: True, "y2", "n2")
    runner = runner_for(graph)
    session = await runner.create_session()

    assert (await runner.run(session.id)).status.next_task_id == "y2"


async def test_two_false_conditional_edges_take_the_first_no_branch():
    graph = graph_of(*(Step(x) for x in ["a", "y1", "n1", "y2", "n2"]))
    graph.add_conditional_edge("a", lambda ctx: False, "y1", "n1")
    graph.add_conditional_edge("a", lambda ctx: False, "y2", "n2")
    runner = runner_for(graph)
    session = await runner.create_session()

    assert (await runner.run(session.id)).status.next_task_id == "n1"
