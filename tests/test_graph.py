"""Graph and GraphBuilder: adding tasks and edges, picking the next task, checking, drawing."""

from __future__ import annotations

import pytest

from flowcore import (
    Context,
    ContextError,
    FanOutTask,
    Graph,
    GraphBuilder,
    GraphError,
    InvalidEdge,
    Task,
    TaskExecutionFailed,
    TaskNotFound,
    TaskResult,
    task,
)


class Step(Task):
    def __init__(self, id: str) -> None:
        self.id = id

    def run(self, ctx: Context) -> TaskResult:
        return TaskResult.move_to_next()


def graph_with(*ids: str) -> Graph:
    graph = Graph("g")
    for task_id in ids:
        graph.add_task(Step(task_id))
    return graph


def is_vip(ctx: Context) -> bool:
    return bool(ctx.get("vip", False))


def is_urgent(ctx: Context) -> bool:
    return bool(ctx.get("urgent", False))


def context(**values: object) -> Context:
    ctx = Context()
    for key, value in values.items():
        ctx.set(key, value)
    return ctx


# -- tasks ----------------------------------------------------------------------------------


def test_the_first_task_added_is_the_start_task():
    graph = Graph("g")
    assert graph.start_task_id is None
    graph.add_task(Step("greet"))
    graph.add_task(Step("ask"))
    assert graph.start_task_id == "greet"


def test_add_task_with_the_same_id_replaces_the_first():
    graph = graph_with("greet", "ask")
    newer = Step("greet")
    graph.add_task(newer)
    assert graph.get_task("greet") is newer
    assert graph.start_task_id == "greet"


def test_get_task():
    graph = Graph("g")
    ask = Step("ask")
    graph.add_task(ask)
    assert graph.get_task("ask") is ask
    assert graph.get_task("missing") is None


def test_set_start_task():
    graph = graph_with("greet", "ask")
    graph.set_start_task("ask")
    assert graph.start_task_id == "ask"


def test_set_start_task_to_an_unknown_id_raises_task_not_found():
    graph = graph_with("greet")
    with pytest.raises(TaskNotFound, match="nowhere"):
        graph.set_start_task("nowhere")
    assert graph.start_task_id == "greet"


@pytest.mark.parametrize("not_a_task", [object(), "greet", Step, lambda ctx: TaskResult()])
def test_adding_something_that_is_not_a_task_raises_type_error(not_a_task):
    graph = Graph("g")
    with pytest.raises(TypeError):
        graph.add_task(not_a_task)
    assert graph.start_task_id is None


@pytest.mark.parametrize(
    "options",
    [
        {"task_timeout": 0},
        {"task_timeout": -1.0},
        {"max_steps": -1},
        {"max_steps": 0},
        {"max_steps": 2.5},
    ],
)
def test_bad_graph_limits_raise_value_error_naming_the_setting(options):
    (setting,) = options
    with pytest.raises(ValueError, match=setting):
        Graph("g", **options)
    with pytest.raises(ValueError, match=setting):
        GraphBuilder("g", **options)


def test_none_disables_the_limits():
    graph = Graph("g", task_timeout=None, max_steps=None)
    assert graph.task_timeout is None
    assert graph.max_steps is None


# -- picking the next task ------------------------------------------------------------------


def test_no_edges_means_no_next_task():
    graph = graph_with("a", "b")
    assert graph.find_next_task("a", Context()) is None


def test_a_plain_edge():
    graph = graph_with("a", "b")
    graph.add_edge("a", "b")
    assert graph.find_next_task("a", Context()) == "b"
    assert graph.find_next_task("b", Context()) is None


def test_the_first_plain_edge_wins():
    graph = graph_with("a", "b", "c")
    graph.add_edge("a", "b")
    graph.add_edge("a", "c")
    assert graph.find_next_task("a", Context()) == "b"


def test_a_true_conditional_edge_wins_over_a_plain_edge_added_before_it():
    graph = graph_with("a", "plain", "vip", "regular")
    graph.add_edge("a", "plain")
    graph.add_conditional_edge("a", is_vip, "vip", "regular")
    assert graph.find_next_task("a", context(vip=True)) == "vip"


def test_a_false_conditional_edge_falls_back_to_the_first_plain_edge():
    graph = graph_with("a", "plain", "vip", "regular")
    graph.add_edge("a", "plain")
    graph.add_conditional_edge("a", is_vip, "vip", "regular")
    assert graph.find_next_task("a", context(vip=False)) == "plain"


def test_of_two_conditional_edges_the_first_true_one_wins():
    graph = graph_with("a", "vip", "regular", "urgent", "later")
    graph.add_conditional_edge("a", is_vip, "vip", "regular")
    graph.add_conditional_edge("a", is_urgent, "urgent", "later")
    assert graph.find_next_task("a", context(vip=True, urgent=True)) == "vip"
    assert graph.find_next_task("a", context(vip=False, urgent=True)) == "urgent"


def test_when_both_conditions_are_false_the_no_branch_of_the_first_wins():
    graph = graph_with("a", "vip", "regular", "urgent", "later")
    graph.add_conditional_edge("a", is_vip, "vip", "regular")
    graph.add_conditional_edge("a", is_urgent, "urgent", "later")
    assert graph.find_next_task("a", context()) == "regular"


def test_the_predicate_sees_the_context_it_is_given():
    graph = graph_with("a", "vip", "regular")
    graph.add_conditional_edge("a", is_vip, "vip", "regular")
    ctx = Context()
    assert graph.find_next_task("a", ctx) == "regular"
    ctx.set("vip", True)
    assert graph.find_next_task("a", ctx) == "vip"


def test_a_predicate_that_raises_fails_the_task_it_leaves():
    def needs_score(ctx: Context) -> bool:
        return ctx.get("score") > 10

    graph = graph_with("score", "high", "low")
    graph.add_conditional_edge("score", needs_score, "high", "low")
    with pytest.raises(TaskExecutionFailed) as excinfo:
        graph.find_next_task("score", Context())
    assert str(excinfo.value).startswith("Task 'score' failed: ")
    assert excinfo.value.task_id == "score"
    assert isinstance(excinfo.value.__cause__, TypeError)


def test_a_predicate_raising_a_flowcore_error_is_wrapped_too():
    def bad_key(ctx: Context) -> bool:
        return ctx.get(42)  # ContextError: keys are str

    graph = graph_with("a", "b", "c")
    graph.add_conditional_edge("a", bad_key, "b", "c")
    with pytest.raises(TaskExecutionFailed) as excinfo:
        graph.find_next_task("a", Context())
    assert str(excinfo.value).startswith("Task 'a' failed: ")
    assert isinstance(excinfo.value.__cause__, ContextError)


def test_graph_does_not_check_edges():
    graph = graph_with("a")
    graph.add_edge("a", "ghost")
    graph.add_conditional_edge("ghost", is_vip, "phantom", "spirit")
    assert graph.find_next_task("a", Context()) == "ghost"
    assert graph.find_next_task("ghost", Context()) == "spirit"


# -- GraphBuilder ---------------------------------------------------------------------------


def test_builder_calls_chain_and_build_gives_a_working_graph():
    graph = (
        GraphBuilder("support")
        .add_task(Step("greet"))
        .add_task(Step("vip"))
        .add_task(Step("regular"))
        .add_conditional_edge("greet", is_vip, "vip", "regular")
        .add_edge("vip", "regular")
        .build()
    )
    assert isinstance(graph, Graph)
    assert graph.id == "support"
    assert graph.start_task_id == "greet"
    assert graph.find_next_task("greet", context(vip=True)) == "vip"
    assert graph.find_next_task("greet", Context()) == "regular"
    assert graph.find_next_task("vip", Context()) == "regular"


def test_builder_methods_return_the_builder():
    builder = GraphBuilder("g")
    assert builder.add_task(Step("a")) is builder
    assert builder.add_task(Step("b")) is builder
    assert builder.add_edge("a", "b") is builder
    assert builder.add_conditional_edge("b", is_vip, "a", "b") is builder
    assert builder.set_start_task("b") is builder


def test_builder_honours_set_start_task():
    graph = GraphBuilder("g").add_task(Step("a")).add_task(Step("b")).set_start_task("b").build()
    assert graph.start_task_id == "b"


def test_builder_passes_on_the_limits():
    graph = GraphBuilder("g", task_timeout=5, max_steps=7).add_task(Step("a")).build()
    assert (graph.task_timeout, graph.max_steps) == (5, 7)


@pytest.mark.parametrize(
    "add_edges",
    [
        pytest.param(lambda b: b.add_edge("a", "ghost"), id="plain-to"),
        pytest.param(lambda b: b.add_edge("ghost", "a"), id="plain-from"),
        pytest.param(lambda b: b.add_conditional_edge("a", is_vip, "ghost", "a"), id="yes"),
        pytest.param(lambda b: b.add_conditional_edge("a", is_vip, "a", "ghost"), id="no"),
    ],
)
def test_build_rejects_an_edge_naming_an_unknown_task(add_edges):
    builder = GraphBuilder("g").add_task(Step("a"))
    add_edges(builder)
    with pytest.raises(InvalidEdge, match="'ghost'"):
        builder.build()


def test_build_rejects_an_unknown_start_task():
    builder = GraphBuilder("g").add_task(Step("a")).set_start_task("nowhere")
    with pytest.raises(TaskNotFound, match="nowhere"):
        builder.build()


def test_build_rejects_a_graph_with_no_tasks():
    with pytest.raises(GraphError) as excinfo:
        GraphBuilder("empty").build()
    assert not isinstance(excinfo.value, (InvalidEdge, TaskNotFound))


def test_invalid_edge_and_task_not_found_are_graph_errors():
    assert issubclass(InvalidEdge, GraphError)
    assert issubclass(TaskNotFound, GraphError)


def test_changing_the_builder_after_build_leaves_the_graph_alone():
    builder = GraphBuilder("g").add_task(Step("a")).add_task(Step("b"))
    graph = builder.build()
    builder.add_task(Step("c")).add_edge("a", "c")
    assert graph.get_task("c") is None
    assert graph.find_next_task("a", Context()) is None


# -- Mermaid --------------------------------------------------------------------------------


def test_to_mermaid_draws_every_task_and_labels_conditional_edges():
    graph = graph_with("greet", "vip_desk", "queue", "done")
    graph.add_conditional_edge("greet", is_vip, "vip_desk", "queue")
    graph.add_edge("vip_desk", "done")
    graph.add_edge("queue", "done")

    chart = graph.to_mermaid()

    assert chart.splitlines()[0] == "flowchart TD"
    for task_id in ("greet", "vip_desk", "queue", "done"):
        assert task_id in chart
    arrows = [line for line in chart.splitlines() if "-->" in line]
    labelled = [line for line in arrows if "-->|" in line]
    assert len(arrows) == 4
    assert len(labelled) == 2
    assert any("is_vip" in line for line in labelled)


def test_to_mermaid_of_a_graph_without_edges():
    chart = graph_with("only").to_mermaid()
    assert chart.startswith("flowchart TD")
    assert "only" in chart
    assert "-->" not in chart


def test_to_mermaid_draws_the_children_of_a_fan_out():
    @task("fraud")
    def fraud(ctx):
        return TaskResult()

    @task("coverage")
    def coverage(ctx):
        return TaskResult()

    graph = GraphBuilder("g").add_task(FanOutTask("checks", [fraud, coverage])).build()

    assert graph.to_mermaid() == (
        "flowchart TD\n"
        '    t0(["checks"])\n'
        '    t0_0[["fraud"]]\n'
        '    t0_1[["coverage"]]\n'
        "    t0 -.-> t0_0\n"
        "    t0 -.-> t0_1\n"
    )
