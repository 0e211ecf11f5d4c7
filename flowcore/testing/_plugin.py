"""flowcore's pytest plugin: the ``flowcore_bench`` fixture and the baseline gate.

Registered through the ``pytest11`` entry point as ``flowcore`` (``-p no:flowcore`` turns it off).
It adds three options:

``--flowcore-save-baseline FILE``
    write the ratio of every flowcore benchmark of the run to FILE;
``--flowcore-baseline FILE``
    compare every ratio with FILE: a ratio more than the tolerance above its baseline is measured
    once more, and if it is still above, the test session fails and names it;
``--flowcore-tolerance T``
    the tolerance, a fraction (default 0.25: 25%).

The ratios come from ``flowcore_bench`` and from ``StorageBenchmark`` subclasses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from flowcore._context import Context
from flowcore._graph import Graph
from flowcore._open import open_storage
from flowcore._runner import FlowRunner
from flowcore._storage import SessionStorage

from ._timing import Regression, Rounds, load_baseline, reference_kernel
from ._timing import ratio as ratio_of
from ._timing import save_baseline as _write_baseline
from ._workload import StepWorkload, check_count

try:
    import pytest_benchmark  # noqa: F401  (only whether it is there)
except ImportError:  # pragma: no cover - exercised where pytest-benchmark is missing
    HAVE_PYTEST_BENCHMARK = False
else:
    HAVE_PYTEST_BENCHMARK = True

__all__ = [
    "BenchResult",
    "Gate",
    "flowcore_bench",
    "gate_of",
    "pytest_addoption",
    "pytest_configure",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]

DEFAULT_TOLERANCE = 0.25


@dataclass(frozen=True)
class BenchResult:
    """What ``flowcore_bench`` measured: µs in the fastest rounds, and their same-run ratio."""

    name: str
    step_us: float
    """µs per ``runner.run`` call, in the fastest round."""
    reference_us: float
    """µs per operation of the reference kernel, in its fastest round of the same run."""
    ratio: float
    """``step_us / reference_us``: what ``--flowcore-baseline`` gates on."""
    remeasured: bool = False
    """True when the first ratio was above the baseline's limit and this is the second one."""


class Gate:
    """The ratios of one test session, checked against a baseline and saved on request."""

    def __init__(
        self, baseline: Mapping[str, float] | None, save_to: str | None, tolerance: float
    ) -> None:
        self.baseline = dict(baseline) if baseline is not None else None
        self.save_to = save_to
        self.tolerance = tolerance
        self.ratios: dict[str, float] = {}
        self.remeasured: dict[str, tuple[float, float]] = {}
        self.failures: list[Regression] = []

    def limit(self, name: str) -> float | None:
        if self.baseline is None or name not in self.baseline:
            return None
        return self.baseline[name] * (1 + self.tolerance)

    def over_limit(self, name: str, ratio: float) -> bool:
        """Whether ``ratio`` is above its baseline's limit: measure it once more, then record."""
        limit = self.limit(name)
        return limit is not None and ratio > limit

    def record(self, name: str, ratio: float, first: float | None = None) -> None:
        """Keep ``ratio`` for ``name`` (``first``: the ratio measured before it, if any).

        A ratio still above its baseline's limit fails the test session.
        """
        if first is not None:
            self.remeasured[name] = (first, ratio)
        if self.over_limit(name, ratio):
            assert self.baseline is not None
            self.failures.append(Regression(name, ratio, self.baseline[name], self.tolerance))
        self.ratios[name] = ratio


_GATE = pytest.StashKey[Gate]()


def gate_of(config: pytest.Config) -> Gate:
    """The session's gate (set up by the plugin's ``pytest_configure``)."""
    try:
        return config.stash[_GATE]
    except KeyError:
        raise RuntimeError(
            "flowcore's pytest plugin is not active (was it disabled with -p no:flowcore?)"
        ) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowcore", "flowcore benchmark gating")
    group.addoption(
        "--flowcore-save-baseline",
        metavar="FILE",
        default=None,
        help="write the ratio of every flowcore benchmark of this run to FILE (JSON)",
    )
    group.addoption(
        "--flowcore-baseline",
        metavar="FILE",
        default=None,
        help="fail the run when a flowcore benchmark's ratio is more than the tolerance above "
        "its ratio in FILE (measured once more first)",
    )
    group.addoption(
        "--flowcore-tolerance",
        metavar="FRACTION",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="how far above its baseline a ratio may go (default 0.25, i.e. 25%%)",
    )


def pytest_configure(config: pytest.Config) -> None:
    save_to = config.getoption("flowcore_save_baseline", None)
    baseline_file = config.getoption("flowcore_baseline", None)
    tolerance = config.getoption("flowcore_tolerance", DEFAULT_TOLERANCE)
    if not tolerance >= 0:
        raise pytest.UsageError(
            f"--flowcore-tolerance must be a fraction of at least 0 (0.25 is 25%), not {tolerance}"
        )
    if save_to or baseline_file:
        if not HAVE_PYTEST_BENCHMARK:
            raise pytest.UsageError(
                "--flowcore-baseline and --flowcore-save-baseline need pytest-benchmark: "
                "pip install 'flowcore[bench]'"
            )
        distributed = getattr(config.option, "dist", "no") not in ("no", None)
        if distributed or getattr(config, "workerinput", None) is not None:
            raise pytest.UsageError(
                "flowcore's benchmark gate cannot run under pytest-xdist: benchmarks that run "
                "beside each other on one machine time each other. Run them in one process "
                "(-p no:xdist, or -n 0)."
            )
    baseline = None
    if baseline_file:
        try:
            baseline = load_baseline(baseline_file)
        except ValueError as exc:
            raise pytest.UsageError(f"--flowcore-baseline: {exc}") from None
    config.stash[_GATE] = Gate(baseline, save_to, tolerance)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gate = session.config.stash.get(_GATE, None)
    if gate is None:
        return
    if gate.save_to and gate.ratios:
        _write_baseline(gate.save_to, gate.ratios, tolerance=gate.tolerance)
    if gate.failures and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    gate = config.stash.get(_GATE, None)
    if gate is None or not (gate.ratios or gate.save_to):
        return
    write = terminalreporter.write_line
    terminalreporter.section("flowcore benchmarks")
    for name, ratio in gate.ratios.items():
        limit = gate.limit(name)
        against = f"  (limit {limit:.3g})" if limit is not None else ""
        write(f"{name}: ratio {ratio:.3g}{against}")
    for name, (first, again) in gate.remeasured.items():
        write(f"{name}: measured once more, ratio {first:.3g} then {again:.3g}")
    if gate.save_to:
        if gate.ratios:
            write(f"baseline of {len(gate.ratios)} ratio(s) written to {gate.save_to}")
        else:
            write(f"no flowcore benchmark ran: nothing written to {gate.save_to}")
    if gate.failures:
        write("flowcore benchmark gate FAILED:", red=True, bold=True)
        for failure in gate.failures:
            write(f"  {failure}", red=True)


def _open(storage: SessionStorage | str, loop: asyncio.AbstractEventLoop) -> SessionStorage:
    if isinstance(storage, SessionStorage):
        return storage
    if isinstance(storage, str):
        opened = open_storage(storage)
        loop.run_until_complete(opened.__aenter__())
        return opened
    raise TypeError(
        f"storage must be a URL (str) or a flowcore.SessionStorage, got {type(storage).__name__}"
    )


def _bench(benchmark: Any, gate: Gate, name: str) -> Callable[..., BenchResult]:
    used = False

    def flowcore_bench(
        graph: Graph,
        storage: SessionStorage | str = "memory://",
        *,
        context: Context | Mapping[str, Any] | None = None,
        steps: int = 200,
        rounds: int = 15,
        warmup: int = 2,
    ) -> BenchResult:
        nonlocal used
        if used:
            raise RuntimeError("flowcore_bench can be called once per test: split the test")
        used = True
        if not isinstance(graph, Graph):
            raise TypeError(f"flowcore_bench needs a flowcore.Graph, got {type(graph).__name__}")
        check_count("rounds", rounds)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be a whole number of at least 0, got {warmup!r}")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "flowcore_bench runs its own event loop: call it from a plain `def` test, "
                "not an `async def` one"
            )
        loop = asyncio.new_event_loop()
        owned = isinstance(storage, str)
        try:
            backend = _open(storage, loop)
            try:
                workload = StepWorkload(FlowRunner(graph, backend), steps=steps, context=context)
                return _measure(benchmark, gate, name, loop, workload, rounds, warmup)
            finally:
                if owned:
                    loop.run_until_complete(backend.close())
        finally:
            loop.close()

    return flowcore_bench


def _measure(
    benchmark: Any,
    gate: Gate,
    name: str,
    loop: asyncio.AbstractEventLoop,
    workload: StepWorkload,
    rounds: int,
    warmup: int,
) -> BenchResult:
    reference, reference_ops = reference_kernel(loop)
    step = Rounds("step")
    ref = Rounds("reference")

    def setup() -> tuple[tuple[list[str]], dict[str, Any]]:
        start = time.perf_counter()
        reference()
        ref.per_op.append((time.perf_counter() - start) / reference_ops)
        return (loop.run_until_complete(workload.prepare()),), {}

    def target(session_ids: list[str]) -> None:
        step.per_op.append(loop.run_until_complete(workload.timed_round(session_ids)))

    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup)
    if len(step.per_op) > rounds:  # pytest-benchmark's warm-up rounds
        del step.per_op[:warmup], ref.per_op[:warmup]
    ratio = ratio_of(step, ref)
    remeasured = False
    if not benchmark.disabled:
        first = None
        if gate.over_limit(name, ratio):
            first, remeasured = ratio, True
            step.per_op.clear()
            ref.per_op.clear()
            for _ in range(rounds):
                target(*setup()[0])
            ratio = ratio_of(step, ref)
        gate.record(name, ratio, first)
    result = BenchResult(name, step.min * 1e6, ref.min * 1e6, ratio, remeasured)
    benchmark.extra_info.update(
        flowcore_step_us=result.step_us,
        flowcore_reference_us=result.reference_us,
        flowcore_ratio=result.ratio,
        flowcore_calls_per_round=workload.steps,
    )
    return result


if HAVE_PYTEST_BENCHMARK:

    @pytest.fixture
    def flowcore_bench(
        benchmark: Any, request: pytest.FixtureRequest
    ) -> Callable[..., BenchResult]:
        """``flowcore_bench(graph, storage="memory://", *, context=None, steps=200, rounds=15,
        warmup=2)``: time ``runner.run`` on ``graph`` beside flowcore's reference kernel.

        Each round creates fresh sessions (untimed), runs the reference kernel, then times
        ``steps`` calls of ``runner.run`` (a session that completes is followed by the next
        one). Returns a ``BenchResult``; the ratio is what ``--flowcore-baseline`` gates on,
        under the test's node id.
        """
        return _bench(benchmark, gate_of(request.config), request.node.nodeid)

else:  # pragma: no cover - exercised where pytest-benchmark is missing

    @pytest.fixture
    def flowcore_bench(request: pytest.FixtureRequest) -> Callable[..., BenchResult]:
        """Needs pytest-benchmark: ``pip install 'flowcore[bench]'``."""
        pytest.fail(
            "the flowcore_bench fixture needs pytest-benchmark: pip install 'flowcore[bench]'",
            pytrace=False,
        )
