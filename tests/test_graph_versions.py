"""Graph versions and migrations: sessions stored under an older workflow, run by a newer one."""

from __future__ import annotations

import pickle

import msgpack
import pytest

from flowcore import (
    ExecutionStatus,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    GraphVersionError,
    InMemorySessionStorage,
    NextAction,
    Session,
    TaskResult,
    Tracer,
    task,
)
from flowcore.codec import decode_session, encode_session
from flowcore.testing import migrated


def _hop(task_id: str, action: NextAction = NextAction.Continue):
    @task(task_id)
    def hop(ctx):
        ctx.set("visited", [*ctx.get("visited", []), task_id])
        return TaskResult(f"at {task_id}", action)

    return hop


def v1() -> Graph:
    """intake -> review -> done."""
    graph = Graph("claims")
    for name in ("intake", "review"):
        graph.add_task(_hop(name))
    graph.add_task(_hop("done", NextAction.End))
    return graph.add_edge("intake", "review").add_edge("review", "done")


def rename_review(session: Session) -> None:
    """1 -> 2: 'review' became 'assess'; the amount moved under 'claim'."""
    rename = {"review": "assess"}
    session.current_task_id = rename.get(session.current_task_id, session.current_task_id)
    session.history = [rename.get(t, t) for t in session.history]
    amount = session.context.remove("amount")
    session.context.set("claim", {"amount": amount})


def v2() -> Graph:
    graph = Graph("claims", version=2)
    for name in ("intake", "assess"):
        graph.add_task(_hop(name))
    graph.add_task(_hop("done", NextAction.End))
    graph.add_edge("intake", "assess").add_edge("assess", "done")
    return graph.add_migration(1, rename_review)


def v3() -> Graph:
    graph = v2()
    graph.version = 3
    return graph.add_migration(2, lambda s: s.context.set("currency", "EUR"))


async def stored_at_review(storage) -> None:
    runner = FlowRunner(v1(), storage)
    await runner.create_session("c1", context={"amount": 120})
    await runner.run("c1")  # intake -> review


async def blob_of(storage, session_id: str) -> tuple[int, bytes]:
    session = await storage.get(session_id)
    return session.version, encode_session(session)


# -- the graph --------------------------------------------------------------------------------


def test_a_graph_is_at_version_1_unless_told() -> None:
    assert Graph("g").version == 1
    assert Graph("g", version=4).version == 4
    assert GraphBuilder("g", version=3).add_task(_hop("a")).build().version == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True])
def test_a_version_is_a_whole_number_of_at_least_1(bad) -> None:
    with pytest.raises(ValueError, match="Graph version must be a whole number of at least 1"):
        Graph("g", version=bad)


def test_add_migration_refuses_what_cannot_be_right() -> None:
    graph = Graph("g", version=2)
    with pytest.raises(ValueError, match=r"leads to version 3, above the graph's version 2"):
        graph.add_migration(2, lambda s: None)
    with pytest.raises(TypeError, match="add_migration takes a function fn"):
        graph.add_migration(1, "rename")  # type: ignore[arg-type]
    graph.add_migration(1, lambda s: None)
    with pytest.raises(GraphError, match="already has a migration from version 1 to 2"):
        graph.add_migration(1, lambda s: None)


def test_a_builder_keeps_the_version_and_the_migrations() -> None:
    built = (
        GraphBuilder("claims", version=2)
        .add_task(_hop("intake"))
        .add_migration(1, rename_review)
        .build()
    )
    assert built.version == 2
    assert built.migration(1) is rename_review


# -- what is stored ---------------------------------------------------------------------------


async def test_create_session_stamps_the_graph_version_and_storage_keeps_it() -> None:
    storage = InMemorySessionStorage()
    runner = FlowRunner(v2(), storage)
    await runner.create_session("c1")

    assert (await storage.get("c1")).graph_version == 2


def test_a_blob_from_before_versions_reads_as_version_1_and_version_1_stores_as_before() -> None:
    old = b"\x01" + msgpack.packb(["claims", "intake", None, False, [], 1000, {}, []])

    session = decode_session(old, session_id="c1", version=1)

    assert session.graph_version == 1
    assert encode_session(session) == old  # version 1 adds nothing to the blob


def test_a_session_made_by_hand_has_no_version_until_a_graph_steps_it() -> None:
    assert Session.new_from_task("s", "intake").graph_version is None


# -- a step of an older session ---------------------------------------------------------------


async def test_a_step_migrates_an_older_session_and_saves_it_with_the_step() -> None:
    storage = InMemorySessionStorage()
    await stored_at_review(storage)

    result = await FlowRunner(v3(), storage).run("c1")

    assert result.response == "at assess"  # the renamed task ran
    session = await storage.get("c1")
    assert (session.graph_version, session.version) == (3, 3)  # one save: migration + step
    assert session.current_task_id == "done"
    assert session.history == ["intake", "assess"]
    assert session.context.get("claim") == {"amount": 120}
    assert session.context.get("currency") == "EUR"
    assert "amount" not in session.context


async def test_graph_execute_session_migrates_too() -> None:
    session = Session.new_from_task("s", "review", graph_id="claims", context={"amount": 5})
    session.graph_version = 1

    result = await v2().execute_session(session)

    assert result.response == "at assess"
    assert session.graph_version == 2


async def test_a_session_made_by_hand_takes_the_graph_version_at_its_first_step() -> None:
    session = Session.new_from_task("s", "intake")

    await v2().execute_session(session)

    assert session.graph_version == 2


# -- refused, nothing saved -------------------------------------------------------------------


async def refused(graph: Graph, match: str, storage=None) -> None:
    storage = storage or InMemorySessionStorage()
    if await storage.get("c1") is None:
        await stored_at_review(storage)
    before = await blob_of(storage, "c1")

    with pytest.raises(GraphError, match=match):
        await FlowRunner(graph, storage).run("c1")

    assert await blob_of(storage, "c1") == before


async def test_a_gap_in_the_migrations_is_refused_naming_it() -> None:
    graph = Graph("claims", version=3).add_task(_hop("assess")).add_migration(1, rename_review)

    await refused(graph, r"is at version 1 and the graph at 3, but it has no migration for 2 -> 3")


async def test_a_migration_that_raises_is_refused_and_nothing_is_saved() -> None:
    def broken(session: Session) -> None:
        session.current_task_id = "assess"
        raise KeyError("amount")

    graph = Graph("claims", version=2).add_task(_hop("assess")).add_migration(1, broken)

    await refused(graph, r"the migration from version 1 to 2 raised KeyError: 'amount'")


async def test_a_current_task_missing_after_migrating_is_refused() -> None:
    graph = Graph("claims", version=2).add_task(_hop("intake")).add_migration(1, lambda s: None)

    await refused(graph, r"is at task 'review', which graph 'claims' does not have")


async def test_a_history_entry_missing_after_migrating_is_refused() -> None:
    graph = Graph("claims", version=2).add_task(_hop("review")).add_migration(1, lambda s: None)

    await refused(graph, r"has task 'intake' in its history, which graph 'claims' does not have")


async def test_a_session_of_another_graph_is_refused() -> None:
    other = Graph("completely-different")
    for name in ("intake", "review", "done"):
        other.add_task(_hop(name))

    await refused(other, r"Session 'c1' belongs to graph 'claims', not to 'completely-different'")


async def test_a_session_of_no_graph_runs_under_any() -> None:
    storage = InMemorySessionStorage()
    await storage.save(Session.new_from_task("s", "intake"))

    result = await FlowRunner(v2(), storage).run("s")

    assert result.status == ExecutionStatus.Paused("assess", result.status.reason)


async def test_rolling_deploy_an_old_runner_refuses_a_session_a_new_one_migrated() -> None:
    storage = InMemorySessionStorage()
    old, new = FlowRunner(v1(), storage), FlowRunner(v2(), storage)
    await old.create_session("c1", context={"amount": 120})
    await old.run("c1")  # v1: intake -> review
    await new.run("c1")  # v2: migrated, assess -> done

    await refused(v1(), r"is at version 2, newer than this graph's version 1", storage)
    session = await storage.get("c1")
    assert (session.graph_version, session.current_task_id) == (2, "done")


async def test_a_version_refusal_names_the_versions_for_code_that_routes_it() -> None:
    # A worker tells "a newer deployment has it" (send it on) from "broken" by these fields,
    # without reading the session again.
    storage = InMemorySessionStorage()
    await FlowRunner(v2(), storage).create_session("c1")
    with pytest.raises(GraphVersionError) as newer:
        await FlowRunner(v1(), storage).run("c1")
    gap = Graph("claims", version=3).add_task(_hop("intake"))
    with pytest.raises(GraphVersionError) as missing:
        await FlowRunner(gap, storage).run("c1")

    assert (newer.value.session_id, newer.value.session_version, newer.value.graph_version) == (
        "c1",
        2,
        1,
    )
    assert (missing.value.session_version, missing.value.graph_version) == (2, 3)
    again = pickle.loads(pickle.dumps(newer.value))  # crosses process boundaries intact
    assert (type(again), str(again), again.session_version) == (
        GraphVersionError,
        str(newer.value),
        2,
    )


async def test_tracers_see_the_graph_version() -> None:
    seen = []

    class Versions(Tracer):
        def run_started(self, event):
            seen.append(("started", event.graph_version))

        def run_ended(self, event):
            seen.append(("ended", event.graph_version))

    storage = InMemorySessionStorage()
    await stored_at_review(storage)
    await FlowRunner(v2(), storage, tracers=[Versions()]).run("c1")

    assert seen == [("started", 2), ("ended", 2)]


# -- the test helper ---------------------------------------------------------------------------


async def test_migrated_brings_a_stored_blob_up_as_a_step_would() -> None:
    storage = InMemorySessionStorage()
    await stored_at_review(storage)
    _, blob = await blob_of(storage, "c1")

    session = migrated(v3(), blob)

    assert (session.graph_version, session.current_task_id) == (3, "assess")
    assert session.context.get("claim") == {"amount": 120}
    with pytest.raises(GraphError, match="no migration for 1 -> 2"):
        migrated(Graph("claims", version=2).add_task(_hop("assess")), blob)


def test_the_graph_shows_its_version() -> None:
    assert "%% claims, version 2" in v2().to_mermaid()
    assert "%%" not in v1().to_mermaid()
    assert repr(v2()) == "<Graph 'claims' version 2: 3 tasks, start='intake'>"
