"""Graph versions on SQLite and PostgreSQL: a step migrates and saves in one compare-and-set,
a refused step stores nothing, two versions of a workflow share one database, and
``flowcore sessions migrate`` brings a stored population up."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from flowcore_sql import SqlSessionStorage
from sql_backends import Backend

from flowcore import FlowRunner, GraphError, Session
from flowcore.codec import encode_session
from flowcore.testing import run_flowcore

FLOWS = """
from flowcore import Graph, NextAction, TaskResult, task


def hop(task_id, action=NextAction.Continue):
    @task(task_id)
    def run(ctx):
        return TaskResult(f"at {task_id}", action)

    return run


def v1():
    graph = Graph("claims")
    graph.add_task(hop("intake")).add_task(hop("review")).add_task(hop("done", NextAction.End))
    return graph.add_edge("intake", "review").add_edge("review", "done")


def to_v2(session):
    if session.context.get("poison"):
        raise ValueError("cannot read this claim")
    session.current_task_id = {"review": "assess"}.get(session.current_task_id,
                                                       session.current_task_id)
    session.history = [{"review": "assess"}.get(t, t) for t in session.history]


def v2():
    graph = Graph("claims", version=2)
    graph.add_task(hop("intake")).add_task(hop("assess")).add_task(hop("done", NextAction.End))
    graph.add_edge("intake", "assess").add_edge("assess", "done")
    return graph.add_migration(1, to_v2)
"""


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The two versions of the workflow, in a module `flowcore sessions migrate` can import."""
    (tmp_path / "claim_flows.py").write_text(textwrap.dedent(FLOWS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import claim_flows

    yield claim_flows
    monkeypatch.delitem(__import__("sys").modules, "claim_flows")


async def test_a_step_migrates_and_saves_in_one_compare_and_set(storage, flows) -> None:
    old, new = FlowRunner(flows.v1(), storage), FlowRunner(flows.v2(), storage)
    await old.create_session("c1")
    await old.run("c1")  # intake -> review, under version 1

    result = await new.run("c1")

    assert result.response == "at assess"
    stored = await storage.get("c1")
    assert (stored.graph_version, stored.version, stored.current_task_id) == (2, 3, "done")
    assert stored.history == ["intake", "assess"]


async def test_a_refused_migration_stores_nothing(storage, flows) -> None:
    old = FlowRunner(flows.v1(), storage)
    await old.create_session("c1", context={"poison": True})
    await old.run("c1")
    before = encode_session(await storage.get("c1"))

    with pytest.raises(GraphError, match="raised ValueError: cannot read this claim"):
        await FlowRunner(flows.v2(), storage).run("c1")

    stored = await storage.get("c1")
    assert (stored.version, encode_session(stored)) == (2, before)


def refusing_graphs(flows) -> dict[str, tuple[object, str]]:
    """Graphs a step of a version-1 session at 'review' must refuse, and why."""
    gap = flows.Graph("claims", version=3).add_task(flows.hop("assess"))
    gap.add_migration(1, flows.to_v2)
    no_task = flows.Graph("claims", version=2).add_task(flows.hop("intake"))
    no_task.add_migration(1, lambda session: None)
    no_history = flows.Graph("claims", version=2).add_task(flows.hop("review"))
    no_history.add_migration(1, lambda session: None)
    other = flows.Graph("billing").add_task(flows.hop("review"))
    return {
        "gap": (gap, r"has no migration for 2 -> 3"),
        "missing task": (no_task, r"is at task 'review', which graph 'claims' does not have"),
        "missing history": (no_history, r"has task 'intake' in its history"),
        "other graph": (other, r"belongs to graph 'claims', not to 'billing'"),
    }


@pytest.mark.parametrize("case", ["gap", "missing task", "missing history", "other graph"])
async def test_a_step_the_rules_refuse_stores_nothing(storage, flows, case: str) -> None:
    graph, match = refusing_graphs(flows)[case]
    old = FlowRunner(flows.v1(), storage)
    await old.create_session("c1")
    await old.run("c1")  # at 'review', version 1
    before = encode_session(await storage.get("c1"))

    with pytest.raises(GraphError, match=match):
        await FlowRunner(graph, storage).run("c1")

    stored = await storage.get("c1")
    assert (stored.version, encode_session(stored)) == (2, before)


async def test_an_old_worker_refuses_a_session_a_new_one_moved_on(storage, flows) -> None:
    old, new = FlowRunner(flows.v1(), storage), FlowRunner(flows.v2(), storage)
    await old.create_session("c1")
    await old.run("c1")
    await new.run("c1")

    with pytest.raises(GraphError, match="is at version 2, newer than this graph's version 1"):
        await old.run("c1")

    assert (await storage.get("c1")).graph_version == 2


async def populate(storage: SqlSessionStorage, flows) -> None:
    """200 sessions at version 1, 30 already at 2, 10 of another graph, 10 a migration refuses."""
    old, new = FlowRunner(flows.v1(), storage), FlowRunner(flows.v2(), storage)
    for i in range(200):
        await old.create_session(f"v1-{i:03}")
        await old.run(f"v1-{i:03}")
    for i in range(30):
        await new.create_session(f"v2-{i:02}")
    for i in range(10):
        await storage.save(Session.new_from_task(f"other-{i}", "x", graph_id="billing"))
        await old.create_session(f"poison-{i}", context={"poison": True})


async def migrate(backend: Backend, *args: str) -> tuple[int, str]:
    """``flowcore sessions migrate`` as a user runs it: a process of its own, in the directory
    of the module that holds the graph."""
    url = backend.url if backend.name == "sqlite" else f"{backend.url}?schema={backend.schema}"
    argv = ["sessions", "migrate", "--graph", "claim_flows:v2", "--storage", url, *args]
    done = await asyncio.to_thread(run_flowcore, *argv, load_plugins="sql", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout, done.stderr
    return done.returncode, done.stdout


async def test_sessions_migrate_brings_a_population_up_and_can_run_again(
    backend: Backend, storage: SqlSessionStorage, flows
) -> None:
    await populate(storage, flows)
    blobs = {i: encode_session(await storage.get(i)) for i in await storage.list_sessions()}

    status, dry = await migrate(backend, "--dry-run", "--batch", "64")

    assert status == 1  # ten would fail
    assert "would migrate 200 session(s) to version 2 of graph 'claims'" in dry
    assert "already at version 2: 30" in dry
    assert "left alone, of other graphs: 10" in dry
    assert "failed: 10 (left as they were)" in dry
    assert "'poison-0': Session 'poison-0' of graph 'claims': the migration from" in dry
    assert {i: encode_session(await storage.get(i)) for i in blobs} == blobs  # dry: none saved

    status, out = await migrate(backend, "--batch", "64")

    assert status == 1
    assert "migrated 200 session(s)" in out
    stored = await storage.get("v1-042")
    assert (stored.graph_version, stored.current_task_id, stored.version) == (2, "assess", 3)
    assert (await storage.get("poison-3")).graph_version == 1

    status, again = await migrate(backend)

    assert "migrated 0 session(s)" in again
    assert "already at version 2: 230" in again
