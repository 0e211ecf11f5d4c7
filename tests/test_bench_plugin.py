"""flowcore's pytest plugin, run as a user's test suite would run it: in a pytest of its own.

Each test writes a small test suite that uses ``flowcore_bench`` and runs pytest on it in a
subprocess (so the implementation of the core under test, compiled or pure, is the one it uses).
"""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow

SUITE = """
import os
import time

import pytest
from flowcore import Graph, NextAction, TaskResult, task

# SLOW_CALLS: how many calls are slowed (SLOW_US µs each) before the task runs at full speed.
SLOW_CALLS = int(os.environ.get("SLOW_CALLS", "0"))
SLOW_US = float(os.environ.get("SLOW_US", "0"))
calls = 0


@task("work")
def work(ctx):
    global calls
    calls += 1
    if calls <= SLOW_CALLS:
        until = time.perf_counter() + SLOW_US / 1e6
        while time.perf_counter() < until:
            pass
    ctx.set("n", calls)
    return TaskResult(None, NextAction.GoTo("work"))


def test_my_workflow(flowcore_bench):
    result = flowcore_bench(Graph("mine").add_task(work), steps=50, rounds=7, warmup=1)
    assert result.ratio == pytest.approx(result.step_us / result.reference_us)
"""

# pytest-benchmark runs warmup + rounds = 8 rounds of 50 calls before the gate looks.
FIRST_MEASUREMENT_CALLS = 8 * 50


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_speed=SUITE)
    return pytester


def run(suite: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    for name, value in env.items():
        suite._monkeypatch.setenv(name, value)
    return suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", *args)


def record_baseline(suite: pytest.Pytester) -> float:
    result = run(suite, "--flowcore-save-baseline", "base.json")
    assert result.ret == 0, result.stdout.str()
    saved = json.loads((suite.path / "base.json").read_text())
    return saved["ratios"]["test_speed.py::test_my_workflow"]


def test_a_benchmark_records_its_ratio_in_a_baseline_and_in_extra_info(suite):
    result = run(suite, "--flowcore-save-baseline", "base.json", "--benchmark-json", "b.json")

    assert result.ret == 0, result.stdout.str()
    saved = json.loads((suite.path / "base.json").read_text())
    ratio = saved["ratios"]["test_speed.py::test_my_workflow"]
    assert ratio > 1  # a flowcore step does more than the reference kernel's few operations
    info = json.loads((suite.path / "b.json").read_text())["benchmarks"][0]["extra_info"]
    assert info["flowcore_ratio"] == ratio
    assert info["flowcore_step_us"] / info["flowcore_reference_us"] == pytest.approx(ratio)
    result.stdout.fnmatch_lines(["*flowcore benchmarks*", "*test_my_workflow: ratio*"])


def test_the_same_workflow_passes_against_its_own_baseline(suite):
    record_baseline(suite)

    result = run(suite, "--flowcore-baseline", "base.json", "--flowcore-tolerance", "0.5")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_my_workflow: ratio * (limit *)"])


def test_a_slower_workflow_fails_the_session_and_names_the_benchmark(suite):
    record_baseline(suite)

    # Every call 40 µs slower, in the second measurement too: several times the step's cost.
    result = run(suite, "--flowcore-baseline", "base.json", SLOW_CALLS="100000000", SLOW_US="40")

    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(passed=1)  # the test ran; the gate failed the session
    result.stdout.fnmatch_lines(
        [
            "*test_my_workflow: measured once more, ratio * then *",
            "*flowcore benchmark gate FAILED*",
            "*test_speed.py::test_my_workflow: ratio * is more than 25% above its baseline *",
        ]
    )


def test_a_slow_first_measurement_is_measured_once_more_and_passes(suite):
    record_baseline(suite)

    # Slow only while pytest-benchmark measures: the second measurement runs at full speed.
    result = run(
        suite,
        "--flowcore-baseline",
        "base.json",
        SLOW_CALLS=str(FIRST_MEASUREMENT_CALLS),
        SLOW_US="40",
    )

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_my_workflow: measured once more, ratio * then *"])
    result.stdout.no_fnmatch_line("*FAILED*")


def test_a_baseline_that_is_missing_or_not_a_baseline_is_a_usage_error(suite):
    result = run(suite, "--flowcore-baseline", "missing.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--flowcore-baseline: no benchmark baseline at 'missing.json'*"])

    (suite.path / "bad.json").write_text('{"ratios": {"test_speed.py::test_my_workflow": "x"}}')
    result = run(suite, "--flowcore-baseline", "bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'bad.json': the ratio of 'test_speed.py::test_my_workflow'*"])


def test_a_negative_tolerance_is_a_usage_error(suite):
    result = run(suite, "--flowcore-tolerance", "-0.1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--flowcore-tolerance must be a fraction of at least 0*"])


def test_the_gate_refuses_pytest_xdist_clearly(suite):
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--flowcore-save-baseline", "base.json"
    )

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot run under pytest-xdist*"])
    assert not (suite.path / "base.json").exists()


def test_misuse_of_the_fixture_gets_a_clear_error(pytester: pytest.Pytester):
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_misuse="""
import pytest
from flowcore import Graph, NextAction, TaskResult, task
from flowcore import ErrorDecision, ErrorHandler, TaskExecutionFailed
from flowcore import register_plugin, unregister_plugin
from flowcore.testing import BenchmarkFailed


@task("boom")
def boom(ctx):
    raise RuntimeError("no service")


@task("loop")
def loop(ctx):
    return TaskResult(None, NextAction.GoTo("loop"))


def test_not_a_graph(flowcore_bench):
    with pytest.raises(TypeError, match="needs a flowcore.Graph, got dict"):
        flowcore_bench({"a": 1})


def test_a_failing_workflow(flowcore_bench):
    with pytest.raises(TaskExecutionFailed, match="Task 'boom' failed: no service"):
        flowcore_bench(Graph("g").add_task(boom), rounds=1)


class Report(ErrorHandler):
    def handle(self, failure):
        return ErrorDecision.Report("service down")


def test_a_workflow_that_ends_in_an_error_status(flowcore_bench):
    handler = Report()
    register_plugin(handler)
    try:
        with pytest.raises(BenchmarkFailed, match="ended in an error at call 1: service down"):
            flowcore_bench(Graph("g").add_task(boom), rounds=1)
    finally:
        unregister_plugin(handler)


async def test_from_async_code(flowcore_bench):
    with pytest.raises(RuntimeError, match="call it from a plain `def` test"):
        flowcore_bench(Graph("g").add_task(loop))
"""
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")

    result.assert_outcomes(passed=4)
