"""The example plugin of docs/plugins.md, installed as a distribution (``make test`` installs
docs/examples/flowcore-example), found by its entry point and used through the public API."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from fractions import Fraction

import pytest

from flowcore import (
    ExecutionStatus,
    FlowRunner,
    GraphBuilder,
    NextAction,
    TaskExecutionFailed,
    TaskResult,
    open_storage,
    task,
)


@pytest.fixture(autouse=True)
def example_plugin(installed_plugins, monkeypatch):
    try:
        importlib.metadata.distribution("flowcore-example")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            "the example plugin is not installed: run `make test`, or "
            "`pip install -e docs/examples/flowcore-example`"
        )
    monkeypatch.setenv("FLOWCORE_EXAMPLE_SLOW_MS", "20")
    installed_plugins("example")


@task("charge")
def charge(ctx):
    if ctx.get("card") == "declined":
        raise ConnectionError("card declined")
    ctx.set("paid", Fraction(ctx.get("amount"), 3))  # a type the plugin makes storable
    return TaskResult("charged", NextAction.End)


charge.fallback = "apologise"  # the example's error handler routes failures here


@task("apologise")
def apologise(ctx):
    return TaskResult("Sorry, your card was declined.", NextAction.WaitForInput)


@task("slow")
async def slow(ctx):
    await asyncio.sleep(0.05)
    return TaskResult("finally", NextAction.End)


@task("no_fallback")
def no_fallback(ctx):
    raise ValueError("broken")


def runner_on(url: str, *tasks) -> FlowRunner:
    builder = GraphBuilder("shop")
    for t in tasks:
        builder.add_task(t)
    return FlowRunner(builder.build(), open_storage(url))


async def test_its_storage_scheme_shares_sessions_by_name():
    first = runner_on("example://shop", charge, apologise)
    second = runner_on("example://shop", charge, apologise)
    elsewhere = runner_on("example://other", charge, apologise)

    await first.create_session("order-1", context={"amount": 100})

    assert (await second.run("order-1")).response == "charged"
    assert await elsewhere.storage.get("order-1") is None
    stored = await first.storage.get("order-1")
    assert stored.context.get("paid") == Fraction(100, 3)  # its codec type round-trips


async def test_its_error_handler_sends_a_failed_task_to_its_fallback():
    runner = runner_on("example://fallbacks", charge, apologise, no_fallback)
    await runner.create_session("order-2", context={"amount": 5, "card": "declined"})
    await runner.create_session("other", start_task="no_fallback")

    result = await runner.run("order-2")

    assert result.status == ExecutionStatus.Paused(
        "apologise", "Task requested jump to specific task"
    )
    assert (await runner.run("order-2")).response == "Sorry, your card was declined."
    with pytest.raises(TaskExecutionFailed, match="broken"):  # a task without a fallback
        await runner.run("other")


async def test_its_tracer_warns_about_slow_tasks(caplog):
    runner = runner_on("example://slow", slow)
    await runner.create_session("s1")

    await runner.run("s1")

    [record] = [r for r in caplog.records if r.name == "flowcore_example"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("task slow of session s1 took ")
    assert record.getMessage().endswith(" ms (more than 20 ms)")
