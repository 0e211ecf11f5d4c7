"""What flowcore-sentry costs a step that does not fail: installed with Sentry not initialised,
and with Sentry initialised; and what a failed step costs with it.

    .venv/bin/python -m pytest benchmarks/test_sentry.py --benchmark-only

Each test runs a step without the plugin and the same step with it in alternating rounds of
one run (a 3-task ring of trivial plain tasks on in-memory storage, a 5-key context), and
records the µs per step of each (median and fastest round) and their ratios in the
benchmark's ``extra_info``; ``docs/sentry.md`` quotes them. Tracked, not gated.

"Without the plugin" is a ``FlowRunner(..., plugins=False)`` beside the plugin's runner, the
plugin registered for the test. Sentry initialised is a real client with a DSN and a
transport that keeps events in memory: nothing goes over the network. sentry_sdk is imported
in this process, so "not initialised" is the dearer of the two inert cases (the plugin does
not look further when sentry_sdk is not even imported).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import flowcore_sentry.plugin
import sentry_sdk

from .conftest import implementation, per_op
from .workloads import Stepper, cycle_graph, hop_tasks

STEP_OPS = 2000
ROUNDS = 20
FAILING_OPS = 200


class MemoryTransport(sentry_sdk.Transport):
    """Keeps the events it is given: Sentry initialised, with nothing sent anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def capture_envelope(self, envelope: Any) -> None:
        self.events.append(envelope)


def reset_sentry() -> None:
    sentry_sdk.get_global_scope().client.close()
    sentry_sdk.get_global_scope().set_client(None)


@contextlib.contextmanager
def sentry_and_plugin(fc: Any, *, initialised: bool) -> Iterator[MemoryTransport | None]:
    """Sentry initialised (with a memory transport, which it yields) or not, then flowcore-sentry
    registered with ``fc``, as in an application that initialised Sentry first; both undone
    afterwards."""
    reset_sentry()
    transport = None
    if initialised:
        transport = MemoryTransport()
        sentry_sdk.init(
            dsn="https://public@sentry.invalid/1",
            transport=transport,
            default_integrations=False,
        )
    fc._plugins.reset()
    name = fc.register_plugin(flowcore_sentry.plugin, "sentry")
    try:
        yield transport
    finally:
        fc.unregister_plugin(name)
        fc._plugins.reset()
        reset_sentry()


def step_of(fc: Any, ops: int, *, plugin: bool, task_class: Any = None) -> Stepper:
    """A 3-task ring on in-memory storage, ``ops`` steps per call, with or without the plugin."""
    graph = cycle_graph(fc, 3, task_class or hop_tasks(fc).sync)
    storage = fc.InMemorySessionStorage()
    stepper = Stepper(fc.FlowRunner(graph, storage, plugins=plugin), "bench", ops)
    stepper.setup(**{f"k{i}": i for i in range(5)})
    return stepper


def alternate(
    benchmark: Any, runs: dict[str, Callable[[], None]], ops: int, group: str
) -> dict[str, list[float]]:
    """Run each of ``runs`` once per round, in turn, for ROUNDS rounds: µs per op, per run."""
    times: dict[str, list[float]] = {name: [] for name in runs}

    def round_() -> None:
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / ops * 1e6)

    per_op(benchmark, len(runs) * ops, group)
    benchmark.pedantic(round_, rounds=ROUNDS, warmup_rounds=2)
    return times


def record(benchmark: Any, times: dict[str, list[float]], baseline: str, variant: str) -> None:
    """The figures: µs per op of each (median, fastest round), and the variant's ratios."""
    info = benchmark.extra_info
    for name, values in times.items():
        info[f"median_us_{name}"] = round(statistics.median(values), 3)
        info[f"min_us_{name}"] = round(min(values), 3)
    info["median_ratio"] = round(
        statistics.median(times[variant]) / statistics.median(times[baseline]), 4
    )
    info["min_ratio"] = round(min(times[variant]) / min(times[baseline]), 4)


def compare_steps(benchmark: Any, fc: Any) -> None:
    without = step_of(fc, STEP_OPS, plugin=False)
    with_plugin = step_of(fc, STEP_OPS, plugin=True)
    try:
        times = alternate(benchmark, {"without": without, "with": with_plugin}, STEP_OPS, "sentry")
    finally:
        without.close()
        with_plugin.close()
    record(benchmark, times, "without", "with")


def test_step_with_the_plugin_and_sentry_not_initialised(benchmark, impl):
    with sentry_and_plugin(impl.flowcore, initialised=False):
        compare_steps(benchmark, impl.flowcore)


def test_step_with_the_plugin_and_sentry_initialised(benchmark, impl):
    with sentry_and_plugin(impl.flowcore, initialised=True) as transport:
        compare_steps(benchmark, impl.flowcore)
    assert transport is not None
    assert transport.events == []  # no step failed: nothing was sent


def test_failing_step_with_the_plugin_and_sentry_initialised(benchmark):
    """A step whose task raises: the failure as flowcore raises it, beside the same failure
    reported to Sentry (one event, kept by the memory transport). The compiled implementation
    only: the plugin imports flowcore, and the pure copy's exceptions are other classes."""
    fc = implementation("compiled").flowcore

    class Failing(hop_tasks(fc).sync):  # type: ignore[misc]
        def run(self, ctx: Any) -> Any:
            raise ConnectionError("card declined")

    def failing(plugin: bool) -> Stepper:
        stepper = step_of(fc, FAILING_OPS, plugin=plugin, task_class=Failing)

        async def many() -> None:
            for _ in range(FAILING_OPS):
                with contextlib.suppress(fc.TaskExecutionFailed):
                    await stepper.runner.run("bench")

        stepper._many = many  # type: ignore[method-assign]
        return stepper

    with sentry_and_plugin(fc, initialised=True) as transport:
        without = failing(plugin=False)
        with_plugin = failing(plugin=True)
        try:
            runs = {"without": without, "with": with_plugin}
            times = alternate(benchmark, runs, FAILING_OPS, "sentry failure")
        finally:
            without.close()
            with_plugin.close()
    record(benchmark, times, "without", "with")
    assert transport is not None
    assert len(transport.events) == FAILING_OPS * (ROUNDS + 2)  # one event per failed step
