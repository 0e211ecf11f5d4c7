"""The metrics: how long steps take, how many ran, lost a race, and how tasks failed."""

from __future__ import annotations

import asyncio
import bisect

import pytest
from flowcore_otel import STEP_BUCKETS
from otel_telemetry import chain, pausing

from flowcore import (
    Context,
    ErrorDecision,
    NextAction,
    RetryPolicy,
    SessionConflict,
    SessionMoved,
    SessionNotFound,
    TaskExecutionFailed,
    TaskResult,
    task,
)


@task("ask")
def ask(ctx: Context) -> TaskResult:
    return TaskResult("which order?", NextAction.WaitForInput)


async def test_each_step_is_counted_and_timed_by_graph_and_status(telemetry):
    runner = telemetry.runner(chain("support", ask))
    await runner.create_session("s-1")
    await runner.create_session("s-2")

    await runner.run("s-1")
    await runner.run("s-2")
    with pytest.raises(SessionNotFound):
        await runner.run("nobody")

    found = telemetry.metrics()
    assert sorted(
        (attributes["flowcore.status"], count) for attributes, count in found["flowcore.steps"]
    ) == [("WaitingForInput", 2), ("failed", 1)]
    assert all(
        attributes["flowcore.graph_id"] == "support" for attributes, _ in found["flowcore.steps"]
    )
    durations = {a["flowcore.status"]: point for a, point in found["flowcore.step.duration"]}
    assert durations.keys() == {"WaitingForInput", "failed"}
    assert durations["WaitingForInput"].count == 2
    assert 0 < durations["WaitingForInput"].sum < 1


async def test_the_step_duration_is_a_histogram_in_seconds_with_buckets_for_steps(telemetry):
    runner = telemetry.runner(chain("slow", pausing("think", 0.03)))
    await runner.create_session("s-1")

    await runner.run("s-1")

    metric = telemetry.metric("flowcore.step.duration")
    assert metric.unit == "s"
    [point] = metric.data.data_points
    assert tuple(point.explicit_bounds) == STEP_BUCKETS
    assert 0.03 <= point.sum < 1
    # The step falls in the bucket of its duration: (0.025, 0.05] unless the machine is busy.
    assert point.bucket_counts[bisect.bisect_left(STEP_BUCKETS, point.sum)] == 1


async def test_a_lost_race_is_counted_as_a_conflict(telemetry):
    runner = telemetry.runner(chain("race", pausing("slow", 0.01)))
    await runner.create_session("s-1")

    outcomes = await asyncio.gather(runner.run("s-1"), runner.run("s-1"), return_exceptions=True)
    with pytest.raises(SessionMoved):  # an answer meant for another version: a conflict too
        await runner.run("s-1", expect_version=1)

    assert sum(isinstance(o, SessionConflict) for o in outcomes) == 1
    assert telemetry.metrics()["flowcore.conflicts"] == [({"flowcore.graph_id": "race"}, 2)]


async def test_no_conflict_no_failure_counted_when_all_goes_well(telemetry):
    runner = telemetry.runner(chain("calm", ask))
    await runner.create_session("s-1")

    await runner.run("s-1")

    found = telemetry.metrics()
    assert "flowcore.conflicts" not in found
    assert "flowcore.task.failures" not in found


async def test_each_failed_attempt_is_counted_with_what_became_of_it(telemetry):
    calls = []

    @task("flaky", retry=RetryPolicy(max_attempts=2, initial_delay=0.001, jitter=False))
    def flaky(ctx: Context) -> TaskResult:
        calls.append(1)
        raise ConnectionError("down")

    @task("charge")
    def charge(ctx: Context) -> TaskResult:
        raise ConnectionError("declined")

    runner = telemetry.runner(chain("jobs", flaky))
    reported = telemetry.runner(
        chain("shop", charge), error_handlers=[lambda failure: ErrorDecision.Report()]
    )
    await runner.create_session("j-1")
    await reported.create_session("o-1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("j-1")
    await reported.run("o-1")

    failures = sorted(
        (a["flowcore.graph_id"], a["flowcore.task_id"], a["flowcore.outcome"], count)
        for a, count in telemetry.metrics()["flowcore.task.failures"]
    )
    assert failures == [
        ("jobs", "flaky", "failed", 1),
        ("jobs", "flaky", "retried", 1),
        ("shop", "charge", "reported", 1),
    ]


async def test_metrics_are_kept_when_spans_are_sampled_out(telemetry):
    from flowcore_otel import OpenTelemetryTracer
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from flowcore import FlowRunner, InMemorySessionStorage

    @task("charge")
    def charge(ctx: Context) -> TaskResult:
        raise ConnectionError("declined")

    tracer = OpenTelemetryTracer(
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
        meter_provider=telemetry.meter_provider,
    )
    runner = FlowRunner(
        chain("shop", charge), InMemorySessionStorage(), tracers=[tracer], plugins=False
    )
    await runner.create_session("o-1")

    with pytest.raises(TaskExecutionFailed):
        await runner.run("o-1")

    found = telemetry.metrics()
    assert [count for _, count in found["flowcore.steps"]] == [1]
    assert [a["flowcore.outcome"] for a, _ in found["flowcore.task.failures"]] == ["failed"]
