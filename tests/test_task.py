"""Task, the @task decorator and RetryPolicy."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from flowcore import (
    Context,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    Graph,
    InMemorySessionStorage,
    NextAction,
    RetryPolicy,
    Session,
    Task,
    TaskExecutionFailed,
    TaskResult,
    task,
)


async def run_once(*tasks: Task, context: dict[str, object] | None = None):
    """Run one step of a fresh session of a graph made of ``tasks``; return (result, session)."""
    graph = Graph("test")
    for t in tasks:
        graph.add_task(t)
    for before, after in itertools.pairwise(tasks):
        graph.add_edge(before.id, after.id)
    storage = InMemorySessionStorage()
    runner = FlowRunner(graph, storage)
    session = await runner.create_session(context=context)
    result = await runner.run(session.id)
    return result, await storage.get(session.id)


# -- Task ids -------------------------------------------------------------------------------


class Greet(Task):
    def run(self, ctx: Context) -> TaskResult:
        return TaskResult("hello", NextAction.End)


class LoudGreet(Greet):
    pass


def test_the_default_id_is_module_and_qualname():
    assert Greet().id == f"{__name__}.Greet"
    assert Greet.id == f"{__name__}.Greet"


def test_a_subclass_gets_its_own_default_id():
    assert LoudGreet().id == f"{__name__}.LoudGreet"
    assert LoudGreet().id != Greet().id


def test_the_default_id_of_a_class_defined_in_a_function():
    class Local(Task):
        def run(self, ctx: Context) -> TaskResult:
            return TaskResult()

    assert (
        Local().id
        == f"{__name__}.test_the_default_id_of_a_class_defined_in_a_function.<locals>.Local"
    )


def test_id_as_a_class_attribute():
    class Classify(Task):
        id = "classify"

        def run(self, ctx: Context) -> TaskResult:
            return TaskResult()

    assert Classify().id == "classify"


def test_id_as_a_property():
    class Named(Task):
        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def id(self) -> str:
            return f"step-{self.name}"

        def run(self, ctx: Context) -> TaskResult:
            return TaskResult()

    assert Named("one").id == "step-one"
    assert Named("two").id == "step-two"


def test_id_as_an_instance_attribute_without_calling_task_init():
    class Echo(Task):
        def __init__(self, id: str, text: str) -> None:
            self.id = id
            self.text = text

        def run(self, ctx: Context) -> TaskResult:
            return TaskResult(self.text, NextAction.End)

    first, second = Echo("first", "1"), Echo("second", "2")
    assert (first.id, second.id) == ("first", "second")


def record(ctx: Context, task_id: str) -> None:
    ctx.set("ran", [*ctx.get("ran", []), task_id])


async def test_tasks_with_every_kind_of_id_run_in_a_graph():
    class ByClassAttribute(Task):
        id = "by-class"

        def run(self, ctx: Context) -> TaskResult:
            record(ctx, self.id)
            return TaskResult.move_to_next_direct()

    class ByProperty(ByClassAttribute):
        @property
        def id(self) -> str:
            return "by-property"

    class ByInstance(ByClassAttribute):
        def __init__(self) -> None:
            self.id = "by-instance"

    class ByDefault(Task):
        async def run(self, ctx: Context) -> TaskResult:
            record(ctx, self.id)
            return TaskResult(",".join(ctx.get("ran")), NextAction.End)

    result, session = await run_once(ByClassAttribute(), ByProperty(), ByInstance(), ByDefault())

    default_id = f"{__name__}.test_tasks_with_every_kind_of_id_run_in_a_graph.<locals>.ByDefault"
    assert result == ExecutionResult(
        f"by-class,by-property,by-instance,{default_id}", ExecutionStatus.Completed
    )
    assert session.history == ["by-class", "by-property", "by-instance"]


# -- @task ----------------------------------------------------------------------------------


@task
def say_hello(ctx: Context) -> TaskResult:
    """Greets whoever is in ctx['name']."""
    return TaskResult(f"Hello, {ctx.get('name')}", NextAction.End)


@task
async def say_hello_later(ctx: Context) -> TaskResult:
    await asyncio.sleep(0)
    return TaskResult(f"Hello later, {ctx.get('name')}", NextAction.End)


def test_bare_task_makes_a_task_named_after_the_function():
    assert isinstance(say_hello, Task)
    assert isinstance(say_hello_later, Task)
    assert say_hello.id == f"{__name__}.say_hello"
    assert say_hello_later.id == f"{__name__}.say_hello_later"
    assert say_hello.timeout is None
    assert say_hello.retry is None


async def test_bare_sync_task_runs():
    result, _ = await run_once(say_hello, context={"name": "Ada"})
    assert result == ExecutionResult("Hello, Ada", ExecutionStatus.Completed)


async def test_bare_async_task_runs():
    result, _ = await run_once(say_hello_later, context={"name": "Ada"})
    assert result == ExecutionResult("Hello later, Ada", ExecutionStatus.Completed)


def test_called_task_sets_id_timeout_and_retry():
    policy = RetryPolicy(max_attempts=2)

    @task("classify", timeout=2.5, retry=policy)
    def classify(ctx: Context) -> TaskResult:
        return TaskResult()

    @task()
    def unnamed(ctx: Context) -> TaskResult:
        return TaskResult()

    assert isinstance(classify, Task)
    assert (classify.id, classify.timeout, classify.retry) == ("classify", 2.5, policy)
    assert unnamed.id.endswith(".unnamed")


async def test_called_sync_and_async_tasks_run_in_order():
    @task("collect", timeout=5)
    def collect(ctx: Context) -> TaskResult:
        ctx.set("order", ["tea"])
        return TaskResult("collected", NextAction.ContinueAndExecute)

    @task("confirm", timeout=5)
    async def confirm(ctx: Context) -> TaskResult:
        await asyncio.sleep(0)
        return TaskResult(f"confirmed {ctx.get('order')}", NextAction.WaitForInput, "awaiting ok")

    result, session = await run_once(collect, confirm)

    assert result == ExecutionResult("confirmed ['tea']", ExecutionStatus.WaitingForInput)
    assert session.current_task_id == "confirm"
    assert session.status_message == "awaiting ok"
    assert session.context.get("order") == ["tea"]


def test_task_id_must_be_a_str():
    with pytest.raises(TypeError, match="int"):
        task(42)


async def test_an_async_task_over_its_own_timeout_fails():
    @task("slow", timeout=0.05)
    async def slow(ctx: Context) -> TaskResult:
        await asyncio.sleep(10)
        return TaskResult()

    with pytest.raises(TaskExecutionFailed, match=r"Task 'slow' timed out after 0\.05s") as exc:
        await run_once(slow)
    assert exc.value.task_id == "slow"


async def test_a_task_with_retry_runs_again_after_a_failure():
    attempts: list[object] = []

    @task("flaky", retry=RetryPolicy(max_attempts=3, initial_delay=0, jitter=False))
    def flaky(ctx: Context) -> TaskResult:
        attempts.append(ctx.get("partial"))
        ctx.set("partial", len(attempts))
        if len(attempts) < 3:
            raise ConnectionError("upstream down")
        return TaskResult("ok", NextAction.End)

    result, session = await run_once(flaky)

    assert result == ExecutionResult("ok", ExecutionStatus.Completed)
    assert attempts == [None, None, None]  # each attempt saw the context from before the first
    assert session.context.get("partial") == 3


async def test_a_retry_keeps_the_contexts_chat_cap():
    attempts: list[int] = []

    @task("chatty", retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=False))
    def chatty(ctx: Context) -> TaskResult:
        attempts.append(ctx.chat_history_len())
        ctx.add_user_message("attempt")
        if len(attempts) == 1:
            raise ConnectionError("upstream down")
        return TaskResult(None, NextAction.End)

    graph = Graph("test").add_task(chatty)
    session = Session.new_from_task("s", "chatty", context=Context(max_chat_messages=2))
    session.context.add_system_message("kept")
    await graph.execute_session(session)

    ctx = session.context
    assert attempts == [1, 1]
    assert ctx.max_chat_messages == 2
    for i in range(3):
        ctx.add_assistant_message(f"more {i}")
    assert ctx.chat_history_len() == 2
    assert [m.content for m in ctx.get_chat_history()] == ["more 1", "more 2"]


# -- RetryPolicy ----------------------------------------------------------------------------


def test_retry_policy_defaults():
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.initial_delay == pytest.approx(0.1)
    assert policy.multiplier == pytest.approx(2.0)
    assert policy.max_delay == pytest.approx(10.0)
    assert policy.jitter is True
    assert policy.retry_on == (Exception,)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"initial_delay": -0.1},
        {"max_delay": -1},
        {"multiplier": -2},
        {"initial_delay": float("nan")},
    ],
)
def test_retry_policy_rejects_bad_settings_naming_them(options):
    (setting,) = options
    with pytest.raises(ValueError, match=setting):
        RetryPolicy(**options)


def test_delay_grows_by_the_multiplier_up_to_max_delay():
    policy = RetryPolicy(initial_delay=0.1, multiplier=2.0, max_delay=0.3, jitter=False)
    delays = [policy.delay(n) for n in (1, 2, 3, 4)]
    assert delays == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_delay_without_a_cap_in_reach():
    policy = RetryPolicy(initial_delay=0.1, multiplier=2.0, max_delay=10.0, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])


def test_jitter_draws_between_half_and_all_of_the_delay():
    policy = RetryPolicy(initial_delay=0.4, multiplier=1.0, jitter=True)
    delays = [policy.delay(1) for _ in range(200)]
    assert all(0.2 <= d <= 0.4 for d in delays)
    assert len(set(delays)) > 1
