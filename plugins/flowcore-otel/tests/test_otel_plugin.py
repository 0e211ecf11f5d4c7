"""The installed plugin: found by its entry point, tracing every runner through the global
providers the application sets up, waiting at no cost while there are none; and what a bad
configuration or a broken SDK does (never break a step).

The tests that set the global providers run in a Python process of their own: OpenTelemetry
lets a process set them only once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import flowcore_otel
import pytest
from flowcore_otel import OpenTelemetryTracer
from flowcore_otel._dormant import DormantTracer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from otel_telemetry import chain

import flowcore
from flowcore import Context, FlowRunner, InMemorySessionStorage, NextAction, TaskResult, task
from flowcore.testing import run_flowcore

PRELUDE = """
import asyncio, json
from flowcore import FlowRunner, GraphBuilder, InMemorySessionStorage, NextAction, TaskResult, task

@task("greet")
def greet(ctx):
    return TaskResult("hello", NextAction.WaitForInput)

GRAPH = GraphBuilder("hello").add_task(greet).build()

def set_up_sdk():
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader

def names(exporter):
    return [span.name for span in exporter.get_finished_spans()]
"""


def run_python(code: str, **env: str) -> object:
    """Run ``code`` (after PRELUDE) with the installed plugin ``otel`` loaded; what it printed
    as JSON on its last line."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        env={**os.environ, "FLOWCORE_LOAD_PLUGINS": "otel", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_plugin_is_found_by_its_entry_point():
    done = run_flowcore("plugins", "--hook", "flowcore_register_tracers", load_plugins="otel")

    assert done.returncode == 0, done.stderr
    [plugin] = json.loads(done.stdout)
    assert plugin["name"] == "otel"
    assert plugin["distribution"] == "flowcore-otel"
    assert plugin["version"] == flowcore_otel.__version__
    assert plugin["module"] == "flowcore_otel.plugin"
    assert plugin["status"] == "loaded"
    assert plugin["hooks"] == ["flowcore_register_tracers"]


def test_installed_it_traces_every_runner_through_the_sdk_the_application_set_up():
    found = run_python(
        """
        exporter, reader = set_up_sdk()  # at start-up, before any runner

        async def main():
            runner = FlowRunner(GRAPH, InMemorySessionStorage())
            await runner.create_session("s-1")
            await runner.run("s-1")

        asyncio.run(main())
        steps = [
            point.value
            for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics if metric.name == "flowcore.steps"
            for point in metric.data.data_points
        ]
        print(json.dumps({"spans": names(exporter), "steps": steps}))
        """
    )

    assert found == {
        "spans": [
            "flowcore.save",
            "flowcore.load",
            "flowcore.task",
            "flowcore.save",
            "flowcore.run",
        ],
        "steps": [1],
    }


def test_with_no_sdk_it_waits_and_starts_tracing_once_one_is_set_up():
    found = run_python(
        """
        from flowcore_otel._dormant import DormantTracer

        DormantTracer.check_every = 0.05

        async def main():
            runner = FlowRunner(GRAPH, InMemorySessionStorage())  # the plugins load here
            await runner.create_session("s-1")
            await runner.run("s-1")  # no SDK: nothing to record
            exporter, _ = set_up_sdk()  # later than the plugins loaded
            await asyncio.sleep(0.1)
            await runner.run("s-1")  # notices the SDK, and starts the tracer for later steps
            before = names(exporter)
            await runner.run("s-1")
            return before, names(exporter)

        before, after = asyncio.run(main())
        print(json.dumps({"before": before, "after": after}))
        """
    )

    assert found == {
        "before": [],
        "after": ["flowcore.load", "flowcore.task", "flowcore.save", "flowcore.run"],
    }


def test_with_no_sdk_the_plugin_listens_to_run_starts_only():
    found = run_python(
        """
        from flowcore import _plugins  # to see what the runner calls

        tracers = _plugins.registry().tracers
        print(json.dumps([type(t).__name__ for t in tracers]))
        """
    )

    assert found == ["DormantTracer"]
    events = ("run_started", "session_loaded", "task_started", "task_retrying")
    events += ("error_handled", "task_ended", "session_saved", "run_ended")
    assert [event for event in events if event in vars(DormantTracer)] == ["run_started"]


async def test_with_no_sdk_a_step_runs_as_without_the_plugin():
    tracer = OpenTelemetryTracer()  # the global providers: the API's own, recording nothing
    runner = FlowRunner(chain("hello", greet), InMemorySessionStorage(), tracers=[tracer])
    await runner.create_session("s-1")

    result = await runner.run("s-1")

    assert result.response == "hello"


@task("greet")
def greet(ctx: Context) -> TaskResult:
    return TaskResult("hello", NextAction.WaitForInput)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("tracer_provider", "localhost:4317", "an opentelemetry.trace.TracerProvider"),
        ("meter_provider", TracerProvider(), "an opentelemetry.metrics.MeterProvider"),
    ],
)
def test_a_provider_of_the_wrong_kind_is_refused_naming_it(option, value, expected):
    with pytest.raises(TypeError) as refused:
        OpenTelemetryTracer(**{option: value})

    message = str(refused.value)
    assert message.startswith(f"OpenTelemetryTracer({option}=...) takes {expected}")
    assert "leave it out to use the global one" in message
    assert type(value).__name__ in message


def test_a_tracer_given_for_its_provider_is_refused():
    a_tracer = TracerProvider().get_tracer("an-app")

    with pytest.raises(TypeError, match=r"takes an opentelemetry\.trace\.TracerProvider"):
        OpenTelemetryTracer(tracer_provider=a_tracer)


async def test_an_exporter_that_fails_never_breaks_a_step(telemetry, caplog):
    class Unreachable(SpanExporter):
        def export(self, spans):
            raise ConnectionError("collector:4317 refused the connection")

    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(Unreachable()))
    runner = telemetry.runner(chain("hello", greet))
    await runner.create_session("s-1")

    with caplog.at_level(logging.ERROR):
        result = await runner.run("s-1")

    assert result.response == "hello"
    assert len(telemetry.named("flowcore.run")) == 1  # the other exporter still got them


async def test_a_broken_tracer_provider_never_breaks_a_step(caplog):
    class Broken(TracerProvider):
        def get_tracer(self, *args, **kwargs):
            tracer = super().get_tracer(*args, **kwargs)

            def start_span(*args, **kwargs):
                raise RuntimeError("tracer bug")

            tracer.start_span = start_span
            return tracer

    runner = FlowRunner(
        chain("hello", greet),
        InMemorySessionStorage(),
        tracers=[OpenTelemetryTracer(tracer_provider=Broken())],
        plugins=False,
    )
    await runner.create_session("s-1")

    with caplog.at_level(logging.ERROR, logger="flowcore.tracing"):
        first = await runner.run("s-1")
        second = await runner.run("s-1")

    assert first.response == second.response == "hello"
    assert "tracer bug" in caplog.text


async def test_registered_as_a_plugin_it_traces_every_runner(telemetry):
    name = flowcore.register_plugin(telemetry.tracer(), "otel-under-test")
    try:
        runner = FlowRunner(chain("hello", greet), InMemorySessionStorage())
        await runner.create_session("s-1")
        await runner.run("s-1")
    finally:
        flowcore.unregister_plugin(name)

    assert len(telemetry.named("flowcore.run")) == 1


async def test_two_tracers_each_draw_a_whole_tree(telemetry):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    other_exporter = InMemorySpanExporter()
    other = TracerProvider()
    other.add_span_processor(SimpleSpanProcessor(other_exporter))
    runner = FlowRunner(
        chain("hello", greet),
        InMemorySessionStorage(),
        tracers=[telemetry.tracer(), OpenTelemetryTracer(tracer_provider=other)],
        plugins=False,
    )
    await runner.create_session("s-1")
    telemetry.exporter.clear()
    other_exporter.clear()

    await runner.run("s-1")

    for spans in (telemetry.spans(), list(other_exporter.get_finished_spans())):
        [run] = [span for span in spans if span.name == "flowcore.run"]
        below = [span for span in spans if span is not run]
        assert [span.name for span in below] == ["flowcore.load", "flowcore.task", "flowcore.save"]
        assert {span.parent.span_id for span in below} == {run.context.span_id}
