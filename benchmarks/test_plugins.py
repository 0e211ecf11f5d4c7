"""What the plugin system costs a step: next to nothing with no tracer, and what one tracer adds.

``make bench`` shows the table (group ``plugins``; divide by ``ops_per_round`` for µs per step).
``test_the_plugin_system_costs_a_step_less_than_5_percent`` times a step without the plugin
system and with it (no plugins) in alternating rounds of one run, and fails above 5%.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import per_op
from .workloads import Stepper, cycle_graph, hop_tasks

STEP_OPS = 2000
ROUNDS = 15
GATE_ROUNDS = 30
MAX_OVERHEAD = 1.05


class RunnerWithoutPlugins:
    """``FlowRunner.run`` as it was before the plugin system: load, step, save."""

    def __init__(self, graph: Any, storage: Any) -> None:
        self.graph = graph
        self.storage = storage

    async def run(self, session_id: str) -> Any:
        session = await self.storage.get(session_id)
        if session.is_completed:
            return None
        result = await self.graph.execute_session(session)
        await self.storage.save(session)
        return result


def tracers(fc: Any) -> dict[str, Any]:
    """A tracer of run and task events (what a metrics or log tracer listens to), and one of
    every event (session loaded and saved too, whose blob size costs an encode each)."""

    class RunAndTaskTracer(fc.Tracer):
        def run_started(self, event: Any) -> None:
            pass

        def task_started(self, event: Any) -> None:
            pass

        def task_ended(self, event: Any) -> None:
            pass

        def run_ended(self, event: Any) -> None:
            pass

    class EveryEventTracer(RunAndTaskTracer):
        def session_loaded(self, event: Any) -> None:
            pass

        def session_saved(self, event: Any) -> None:
            pass

    return {"one-tracer": RunAndTaskTracer(), "one-tracer-every-event": EveryEventTracer()}


def stepper(fc: Any, variant: str) -> Stepper:
    """A 3-task cycle of trivial sync tasks on in-memory storage, run by the variant's runner."""
    graph = cycle_graph(fc, 3, hop_tasks(fc).sync)
    storage = fc.InMemorySessionStorage()
    if variant == "without-plugin-system":
        runner: Any = RunnerWithoutPlugins(graph, storage)
    elif variant == "no-plugins":
        runner = fc.FlowRunner(graph, storage)
    else:
        runner = fc.FlowRunner(graph, storage, tracers=[tracers(fc)[variant]])
    made = Stepper(fc.FlowRunner(graph, storage), "bench", STEP_OPS)
    made.setup(**{f"k{i}": i for i in range(5)})
    made.runner = runner
    return made


@pytest.fixture(autouse=True)
def no_installed_plugins(impl, monkeypatch):
    """Only the built-in plugin: what is installed must not weigh on the figures."""
    monkeypatch.setenv("FLOWCORE_LOAD_PLUGINS", "")
    impl.flowcore._plugins.reset()
    yield
    impl.flowcore._plugins.reset()


@pytest.mark.parametrize(
    "variant", ["without-plugin-system", "no-plugins", "one-tracer", "one-tracer-every-event"]
)
def test_step(benchmark, impl, variant):
    """``await runner.run(sid)`` with and without the plugin system and tracers."""
    run = stepper(impl.flowcore, variant)
    per_op(benchmark, STEP_OPS, "plugins")
    try:
        benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=2)
    finally:
        run.close()


def test_the_plugin_system_costs_a_step_less_than_5_percent(benchmark, impl):
    """Alternating rounds without and with the plugin system; the fastest round of each."""
    without = stepper(impl.flowcore, "without-plugin-system")
    with_plugins = stepper(impl.flowcore, "no-plugins")
    times: dict[str, list[float]] = {"without": [], "with": []}

    def pair() -> None:
        for name, run in (("without", without), ("with", with_plugins)):
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / STEP_OPS * 1e6)

    per_op(benchmark, 2 * STEP_OPS, "plugins gate")
    try:
        benchmark.pedantic(pair, rounds=GATE_ROUNDS, warmup_rounds=2)
    finally:
        without.close()
        with_plugins.close()
    ratio = min(times["with"]) / min(times["without"])
    benchmark.extra_info["min_us_without_plugin_system"] = round(min(times["without"]), 3)
    benchmark.extra_info["min_us_with_plugin_system"] = round(min(times["with"]), 3)
    benchmark.extra_info["ratio"] = round(ratio, 4)
    assert ratio <= MAX_OVERHEAD, (
        f"a step with the plugin system (no plugins) costs {ratio:.3f}x the step without it "
        f"({min(times['with']):.2f} vs {min(times['without']):.2f} µs)"
    )
