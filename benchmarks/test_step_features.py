"""What the step's features cost over a plain ``run()``: a request id, and streaming.

- ``test_run_chain`` / ``test_stream_chain``: one step of a 3-task ContinueAndExecute chain in
  which each task emits one value, by ``run()`` and by ``stream()`` consumed to the end (9
  events and the result). (stream - run) / 9 is the cost per event.
- ``test_run_request_id``: the plain step of ``test_step`` with a fresh ``request_id`` per step
  (the session keeps the last 8 records, so this is the steady state).

``make bench`` runs them; the CI gate does not (see docs/performance.md).
"""

from __future__ import annotations

from typing import Any

from .conftest import per_op
from .test_hot_path import ROUNDS, run_stepper
from .workloads import Stepper, cycle_graph, hop_tasks

OPS = 1000


def emitting_chain(fc: Any) -> Any:
    """t0 -> t1 -> t2 by ContinueAndExecute, t2 back to t0 by Continue; each emits one value."""

    class Emits(fc.Task):
        def __init__(self, id: str, action: Any) -> None:
            self.id = id
            self.action = action

        def run(self, ctx: Any) -> Any:
            fc.emit(self.id)
            ctx.set("last", self.id)
            return fc.TaskResult(None, self.action)

    graph = fc.Graph("chain3")
    chain = fc.NextAction.ContinueAndExecute
    for i, action in enumerate((chain, chain, fc.NextAction.Continue)):
        graph.add_task(Emits(f"t{i}", action))
        graph.add_edge(f"t{i}", f"t{(i + 1) % 3}")
    return graph


class StreamStepper(Stepper):
    """Consumes ``runner.stream(session_id)`` to its end, ``ops`` times per call."""

    async def _many(self) -> None:
        stream = self.runner.stream
        session_id = self.session_id
        for _ in range(self.ops):
            async for _item in stream(session_id):
                pass


class RequestStepper(Stepper):
    """``runner.run(session_id, request_id=...)`` with a new request id each time."""

    counter = 0

    async def _many(self) -> None:
        run = self.runner.run
        session_id = self.session_id
        for _ in range(self.ops):
            RequestStepper.counter += 1
            await run(session_id, request_id=f"req-{RequestStepper.counter}")


def _bench(benchmark: Any, stepper: Stepper, what: str) -> None:
    stepper.setup(**{f"k{i}": i for i in range(5)})
    per_op(benchmark, OPS, what)
    run_stepper(benchmark, stepper, ROUNDS)


def test_run_chain(benchmark, impl):
    fc = impl.flowcore
    runner = fc.FlowRunner(emitting_chain(fc), fc.InMemorySessionStorage())
    _bench(benchmark, Stepper(runner, "s", OPS), "step")


def test_stream_chain(benchmark, impl):
    fc = impl.flowcore
    runner = fc.FlowRunner(emitting_chain(fc), fc.InMemorySessionStorage())
    _bench(benchmark, StreamStepper(runner, "s", OPS), "step")


def test_run_plain(benchmark, impl):
    fc = impl.flowcore
    graph = cycle_graph(fc, 3, hop_tasks(fc).sync)
    _bench(benchmark, Stepper(fc.FlowRunner(graph, fc.InMemorySessionStorage()), "s", OPS), "step")


def test_run_request_id(benchmark, impl):
    fc = impl.flowcore
    graph = cycle_graph(fc, 3, hop_tasks(fc).sync)
    runner = fc.FlowRunner(graph, fc.InMemorySessionStorage())
    _bench(benchmark, RequestStepper(runner, "s", OPS), "step")


def test_emit_outside_a_stream(benchmark, impl):
    """``flowcore.emit(value)`` in a plain ``run()``: what a task pays for streaming it is not."""
    emit = impl.flowcore.emit
    calls = 100_000

    def many() -> None:
        for _ in range(calls):
            emit("token")

    per_op(benchmark, calls, "emit")
    benchmark.pedantic(many, rounds=ROUNDS, warmup_rounds=1)
