"""When the plugin is active: once the application has called ``sentry_sdk.init`` with somewhere
to send events. Before, it registers one small tracer and imports nothing; and ``configure``
checks its arguments."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import flowcore_sentry
import flowcore_sentry.plugin
import pytest
import sentry_sdk
from sentry_memory import DSN, MemoryTransport

from flowcore import (
    Context,
    FlowRunner,
    GraphBuilder,
    InMemorySessionStorage,
    NextAction,
    TaskExecutionFailed,
    TaskResult,
    task,
)

EVENTS = ("run_started", "session_loaded", "task_started", "task_retrying", "error_handled")
EVENTS += ("task_ended", "session_saved", "run_ended")


@task("pay")
def pay(ctx: Context) -> TaskResult:
    if ctx.get("fail", True):
        raise ConnectionError("card declined")
    return TaskResult(None, NextAction.Continue)


def registered() -> tuple[list[object], list[object]]:
    """What the plugin's hooks register now: (tracers, error handlers)."""
    tracers: list[object] = []
    handlers: list[object] = []
    flowcore_sentry.plugin.flowcore_register_tracers(tracers.append)
    flowcore_sentry.plugin.flowcore_register_error_handlers(handlers.append)
    return tracers, handlers


def events_of(tracer: object) -> list[str]:
    return [name for name in EVENTS if hasattr(tracer, name)]


async def failing_steps(runner: FlowRunner, count: int) -> None:
    for _ in range(count):
        with pytest.raises(TaskExecutionFailed):
            await runner.run("s")


def test_before_sentry_init_only_a_watcher_of_run_starts_is_registered():
    tracers, handlers = registered()

    assert [events_of(tracer) for tracer in tracers] == [["run_started"]]
    assert handlers == []


def test_once_sentry_is_initialised_the_step_recorder_is(init_sentry):
    init_sentry()

    tracers, handlers = registered()

    assert [events_of(tracer) for tracer in tracers] == [
        ["run_started", "task_retrying", "task_ended", "run_ended"]
    ]
    assert handlers == []


@pytest.mark.parametrize(
    ("settings", "initialised", "handler"),
    [
        ({"route_to": "fallback"}, False, True),
        ({"route_to": "fallback"}, True, True),
        ({"send_context": True}, False, False),
        ({"send_context": True}, True, True),
        ({"send_context": []}, True, False),
    ],
)
def test_the_handler_is_registered_when_it_has_something_to_do(
    init_sentry, settings, initialised, handler
):
    if initialised:
        init_sentry()
    flowcore_sentry.configure(**settings)

    assert len(registered()[1]) == int(handler)


async def test_sentry_initialised_after_the_runner_is_made_reports_from_the_next_step():
    runner = FlowRunner(GraphBuilder("pay").add_task(pay).build(), InMemorySessionStorage())
    await runner.create_session("s")
    await failing_steps(runner, 1)
    transport = MemoryTransport()
    sentry_sdk.init(dsn=DSN, transport=transport, auto_enabling_integrations=False)

    await failing_steps(runner, 1)  # its start is where the plugin sees Sentry initialised
    assert transport.events == []
    await failing_steps(runner, 2)
    assert len(transport.events) == 2


async def test_configure_after_sentry_init_reports_from_the_first_step():
    runner = FlowRunner(GraphBuilder("pay").add_task(pay).build(), InMemorySessionStorage())
    await runner.create_session("s")
    transport = MemoryTransport()
    sentry_sdk.init(dsn=DSN, transport=transport, auto_enabling_integrations=False)
    flowcore_sentry.configure()

    await failing_steps(runner, 1)
    assert len(transport.events) == 1


async def test_sentry_init_without_a_dsn_sends_nothing_and_the_plugin_stays_inert():
    sentry_sdk.init(auto_enabling_integrations=False)  # as with SENTRY_DSN unset
    runner = FlowRunner(GraphBuilder("pay").add_task(pay).build(), InMemorySessionStorage())
    await runner.create_session("s")

    await failing_steps(runner, 2)

    tracers, _ = registered()
    assert [events_of(tracer) for tracer in tracers] == [["run_started"]]


def test_the_plugin_never_imports_sentry_sdk_itself(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio, sys
        import flowcore_sentry.plugin
        from flowcore import (FlowRunner, GraphBuilder, InMemorySessionStorage, NextAction,
                              TaskResult, register_plugin, task)

        @task("hop")
        def hop(ctx):
            return TaskResult(None, NextAction.End)

        async def main():
            register_plugin(flowcore_sentry.plugin)
            runner = FlowRunner(GraphBuilder("g").add_task(hop).build(), InMemorySessionStorage())
            await runner.create_session("s")
            await runner.run("s")

        asyncio.run(main())
        assert "sentry_sdk" not in sys.modules, "the plugin imported sentry_sdk"
        """
    )
    env: dict[str, Any] = {**os.environ, "FLOWCORE_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"send_context": "email"}, TypeError, r"pass send_context=\['email'\]"),
        ({"send_context": 1}, TypeError, "True, False or a list of context keys, got int"),
        ({"send_context": ["email", 3]}, TypeError, "got 3 \\(int\\)"),
        ({"route_to": ""}, ValueError, "empty task id"),
        ({"route_to": 3}, TypeError, "fallback task id \\(str\\).*got int"),
        ({"route_to": {"pay": None}}, TypeError, "got 'pay': None"),
        ({"route_to": {"": "fallback"}}, TypeError, "non-empty strings"),
    ],
)
def test_configure_refuses_what_it_cannot_use_and_keeps_its_settings(arguments, error, message):
    flowcore_sentry.configure(route_to="fallback")

    with pytest.raises(error, match=message):
        flowcore_sentry.configure(**arguments)

    assert len(registered()[1]) == 1  # the settings before the refused call still hold


def test_configure_takes_keywords_only():
    with pytest.raises(TypeError):
        flowcore_sentry.configure(True)  # type: ignore[misc]
