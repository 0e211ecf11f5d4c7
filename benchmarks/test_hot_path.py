"""The per-step cost of flowcore, compiled and pure Python, beside a fixed reference kernel.

``make bench`` shows the tables; ``make bench-check`` gates on the ratios (benchmarks/gate.py).
Each round runs many operations: divide by ``ops_per_round`` (the gate and the docs do) for
µs per operation.
"""

from __future__ import annotations

import msgpack
import pytest

from .conftest import implementation, per_op
from .workloads import (
    Stepper,
    bare_record,
    chain_graph,
    cycle_graph,
    hop_tasks,
    no_copy_storage,
    reference_kernel,
    representative_context,
    sized_context,
)

STEP_OPS = 2000
ROUNDS = 15


def run_stepper(benchmark, stepper: Stepper, rounds: int = ROUNDS) -> None:
    try:
        benchmark.pedantic(stepper, rounds=rounds, warmup_rounds=2)
    finally:
        stepper.close()


def test_reference_kernel(benchmark):
    per_op(benchmark, STEP_OPS, "step")
    run_stepper(benchmark, reference_kernel(STEP_OPS))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_step(benchmark, impl, kind):
    """``await runner.run(sid)``: a 3-task cycle of trivial tasks, a 5-key context, in memory."""
    fc = impl.flowcore
    tasks = hop_tasks(fc)
    graph = cycle_graph(fc, 3, tasks.sync if kind == "sync" else tasks.async_)
    stepper = Stepper(fc.FlowRunner(graph, fc.InMemorySessionStorage()), "bench", STEP_OPS)
    stepper.setup(**{f"k{i}": i for i in range(5)})
    per_op(benchmark, STEP_OPS, "step")
    run_stepper(benchmark, stepper)


def test_step_engine_only(benchmark, impl):
    """The same step on a storage that neither encodes nor copies: what the engine costs."""
    fc = impl.flowcore
    graph = cycle_graph(fc, 3, hop_tasks(fc).sync)
    stepper = Stepper(fc.FlowRunner(graph, no_copy_storage(fc)), "bench", STEP_OPS)
    stepper.setup(**{f"k{i}": i for i in range(5)})
    per_op(benchmark, STEP_OPS, "step")
    run_stepper(benchmark, stepper)


def test_chain(benchmark, impl):
    """One run through 100 ContinueAndExecute tasks: µs per hop."""
    fc = impl.flowcore
    runs = 20
    stepper = Stepper(fc.FlowRunner(chain_graph(fc, 100), fc.InMemorySessionStorage()), "c", runs)
    stepper.setup()
    per_op(benchmark, runs * 100, "chain")
    run_stepper(benchmark, stepper)


CODEC_OPS = 500


def test_codec(benchmark, impl):
    """encode_session + decode_session of a representative context."""
    fc = impl.flowcore
    session = fc.Session.new_from_task("s", "t0", context=representative_context(fc))
    encode, decode = impl.codec.encode_session, impl.codec.decode_session

    def many() -> None:
        for _ in range(CODEC_OPS):
            decode(encode(session), session_id="s", version=1)

    per_op(benchmark, CODEC_OPS, "codec", blob_bytes=len(encode(session)))
    benchmark.pedantic(many, rounds=ROUNDS, warmup_rounds=2)


def test_codec_bare_msgpack(benchmark):
    """The floor: msgpack.packb + unpackb of the same data as plain msgpack types."""
    fc = implementation("compiled").flowcore
    session = fc.Session.new_from_task("s", "t0", context=representative_context(fc))
    record = bare_record(session)
    packb, unpackb = msgpack.packb, msgpack.unpackb

    def many() -> None:
        for _ in range(CODEC_OPS):
            unpackb(packb(record))

    per_op(benchmark, CODEC_OPS, "codec")
    benchmark.pedantic(many, rounds=ROUNDS, warmup_rounds=2)


# -- scaling (compiled only: the question is the shape, not the implementation) -----------------


@pytest.mark.parametrize("tasks", [10, 10_000])
def test_scaling_graph_size(benchmark, tasks):
    fc = implementation("compiled").flowcore
    graph = cycle_graph(fc, tasks, hop_tasks(fc).sync)
    stepper = Stepper(fc.FlowRunner(graph, fc.InMemorySessionStorage()), "bench", STEP_OPS)
    stepper.setup(**{f"k{i}": i for i in range(5)})
    per_op(benchmark, STEP_OPS, "scaling: tasks in the graph")
    run_stepper(benchmark, stepper)


@pytest.mark.parametrize("sessions", [1, 100_000])
def test_scaling_stored_sessions(benchmark, sessions):
    fc = implementation("compiled").flowcore
    storage = fc.InMemorySessionStorage()
    runner = fc.FlowRunner(cycle_graph(fc, 3, hop_tasks(fc).sync), storage)
    stepper = Stepper(runner, "bench", STEP_OPS)
    stepper.setup(**{f"k{i}": i for i in range(5)})
    codec = implementation("compiled").codec
    blob = codec.encode_session(fc.Session.new_from_task("x", "t0", context={"k": 1}))
    # Fill the store directly: the same blob under other ids, as any backend would hold it.
    for i in range(sessions - 1):
        storage._rows[f"other-{i}"] = (1, blob)
    per_op(benchmark, STEP_OPS, "scaling: sessions in storage")
    run_stepper(benchmark, stepper)


@pytest.mark.parametrize("size", ["1KB", "100KB", "1MB"])
def test_scaling_context_size(benchmark, size):
    fc = implementation("compiled").flowcore
    ops = {"1KB": 1000, "100KB": 50, "1MB": 5}[size]
    size_bytes = {"1KB": 1_000, "100KB": 100_000, "1MB": 1_000_000}[size]
    graph = cycle_graph(fc, 3, hop_tasks(fc).sync)
    stepper = Stepper(fc.FlowRunner(graph, fc.InMemorySessionStorage()), "bench", ops)
    stepper.setup(**sized_context(size_bytes))
    per_op(benchmark, ops, "scaling: context size", context_bytes=size_bytes)
    run_stepper(benchmark, stepper, rounds=10)
