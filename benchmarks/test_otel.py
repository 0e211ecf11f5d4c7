"""What flowcore-otel costs a step: installed with no OpenTelemetry SDK set up, a tracer on the
API's no-op providers, and a tracer on the SDK with an in-memory exporter.

    .venv/bin/python -m pytest benchmarks/test_otel.py --benchmark-only

Each test runs a step without the plugin and the same step with it in alternating rounds of one
run (a 3-task ring of trivial plain tasks on in-memory storage, a 5-key context), and records
the µs per step of each (median and fastest round) and their ratios in the benchmark's
``extra_info``; ``docs/otel.md`` quotes them. The installed plugin with no SDK is gated: it must
cost a step next to nothing (``MAX_DORMANT_OVERHEAD``, on the fastest rounds).

"Without the plugin" is a ``FlowRunner(..., plugins=False)`` beside the plugin's runner. The
plugin itself is registered for the test as the installed one is (its hook, on the global
providers, which no test here sets: the plugin's tracer waits for an SDK). The tracers on the
no-op API and on the SDK are given to the runner, the SDK's with providers of its own (a
process can set the global ones only once): the spans and metrics are the same.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import flowcore_otel.plugin
import pytest
from flowcore_otel import OpenTelemetryTracer
from flowcore_otel._dormant import DormantTracer, sdk_configured
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .conftest import per_op
from .workloads import Stepper, cycle_graph, hop_tasks

STEP_OPS = 2000
ROUNDS = 20
MAX_DORMANT_OVERHEAD = 1.10


@pytest.fixture
def plugin_registered(impl: Any) -> Iterator[None]:
    """flowcore-otel registered with ``impl``'s flowcore, as an installed plugin is."""
    fc = impl.flowcore
    assert not sdk_configured(), "these benchmarks need a process with no global SDK set up"
    fc._plugins.reset()
    name = fc.register_plugin(flowcore_otel.plugin, "otel")
    try:
        yield
    finally:
        fc.unregister_plugin(name)
        fc._plugins.reset()


def step_of(fc: Any, *, plugins: bool = False, tracers: tuple[object, ...] = ()) -> Stepper:
    """A 3-task ring on in-memory storage, STEP_OPS steps per call."""
    graph = cycle_graph(fc, 3, hop_tasks(fc).sync)
    storage = fc.InMemorySessionStorage()
    runner = fc.FlowRunner(graph, storage, plugins=plugins, tracers=tracers)
    stepper = Stepper(runner, "bench", STEP_OPS)
    stepper.setup(**{f"k{i}": i for i in range(5)})
    return stepper


def alternate(
    benchmark: Any,
    runs: dict[str, Callable[[], None]],
    group: str,
    between: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Run each of ``runs`` once per round, in turn, for ROUNDS rounds: µs per step, per run.
    ``between`` runs, untimed, after each run."""
    times: dict[str, list[float]] = {name: [] for name in runs}

    def round_() -> None:
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / STEP_OPS * 1e6)
            between()

    per_op(benchmark, len(runs) * STEP_OPS, group)
    benchmark.pedantic(round_, rounds=ROUNDS, warmup_rounds=2)
    return times


def record(benchmark: Any, times: dict[str, list[float]]) -> float:
    """The figures: µs per step of each (median, fastest round), and the ratios of "with" to
    "without"; returns the ratio of the fastest rounds."""
    info = benchmark.extra_info
    for name, values in times.items():
        info[f"median_us_{name}"] = round(statistics.median(values), 3)
        info[f"min_us_{name}"] = round(min(values), 3)
    info["median_ratio"] = round(
        statistics.median(times["with"]) / statistics.median(times["without"]), 4
    )
    ratio = min(times["with"]) / min(times["without"])
    info["min_ratio"] = round(ratio, 4)
    return ratio


def compare(
    benchmark: Any, without: Stepper, with_: Stepper, between: Callable[[], None] = lambda: None
) -> float:
    try:
        times = alternate(benchmark, {"without": without, "with": with_}, "otel", between)
    finally:
        without.close()
        with_.close()
    return record(benchmark, times)


def test_step_with_the_plugin_and_no_sdk(benchmark, impl, plugin_registered):
    fc = impl.flowcore
    with_plugin = step_of(fc, plugins=True)
    [tracer] = fc._plugins.registry().tracers
    assert isinstance(tracer, DormantTracer)  # waiting for an SDK, on run starts only

    ratio = compare(benchmark, step_of(fc), with_plugin)

    assert ratio <= MAX_DORMANT_OVERHEAD, (
        f"with flowcore-otel installed and no SDK, a step costs {ratio:.3f}x the step without "
        f"it (at most {MAX_DORMANT_OVERHEAD}x): it must cost next to nothing"
    )


def test_step_with_a_tracer_on_the_no_op_api(benchmark, impl):
    """An OpenTelemetryTracer given to a runner with no SDK set up: every event handed to the
    API's no-op tracer (what the plugin spares a step by waiting for an SDK)."""
    fc = impl.flowcore
    compare(benchmark, step_of(fc), step_of(fc, tracers=(OpenTelemetryTracer(),)))


def test_step_with_the_sdk_and_an_in_memory_exporter(benchmark, impl):
    """Every step recorded: 4 spans (run, load, task, save) through the SDK's simple processor
    into its in-memory exporter (emptied between runs, untimed), and the metrics into its
    in-memory reader."""
    fc = impl.flowcore
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = OpenTelemetryTracer(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        compare(benchmark, step_of(fc), step_of(fc, tracers=(tracer,)), exporter.clear)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
