"""Graph versions: which sessions a graph may run, and bringing older ones up to its version."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flowcore._errors import GraphError, GraphVersionError, quote_id
from flowcore._session import Session

if TYPE_CHECKING:
    from flowcore._graph import Graph

__all__ = ["DEFAULT_GRAPH_ID", "Migration", "check_graph_version", "check_owner", "migrate"]

Migration = Callable[[Session], object]
"""``fn(session)``: bring a session from one graph version to the next, in place."""

DEFAULT_GRAPH_ID = "default"
"""The graph id of a session made without one (``Session.new_from_task``): any graph runs it."""


def check_graph_version(value: object, what: str) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


def check_owner(graph: Graph, session: Session) -> None:
    """A session of another workflow is not this graph's to run: GraphError, nothing run."""
    owner = session.graph_id
    if owner != graph.id and owner != DEFAULT_GRAPH_ID:
        raise GraphError(
            f"Session {quote_id(session.id)} belongs to graph {quote_id(owner)}, not to "
            f"{quote_id(graph.id)}: run it with a FlowRunner of graph {quote_id(owner)} "
            "(a session of one workflow never runs under another)"
        )


def migrate(graph: Graph, session: Session) -> None:
    """Bring ``session`` to ``graph.version`` in place, or raise GraphError and change nothing
    that is stored (the caller saves only after this returns).

    A session with no version yet (made with ``Session.new_from_task``) takes the graph's.
    """
    found = session.graph_version
    wanted = graph.version
    if found is None or found == wanted:
        session.graph_version = wanted
        return
    where = f"Session {quote_id(session.id)} of graph {quote_id(graph.id)}"
    if found > wanted:
        raise GraphVersionError(
            session.id,
            found,
            wanted,
            f"{where} is at version {found}, newer than this graph's version {wanted}: a "
            f"newer deployment has stepped it. Run it with version {found} or later of the "
            "graph; it is left as it is (sessions are never downgraded)",
        )
    missing = [v for v in range(found, wanted) if graph.migration(v) is None]
    if missing:
        gaps = ", ".join(f"{v} -> {v + 1}" for v in missing)
        raise GraphVersionError(
            session.id,
            found,
            wanted,
            f"{where} is at version {found} and the graph at {wanted}, but it has no migration "
            f"for {gaps}: register it with graph.add_migration({missing[0]}, fn)",
        )
    for version in range(found, wanted):
        fn = graph.migration(version)
        assert fn is not None  # checked above
        try:
            fn(session)
        except Exception as exc:
            raise GraphError(
                f"{where}: the migration from version {version} to {version + 1} raised "
                f"{type(exc).__name__}: {exc}; nothing was saved"
            ) from exc
        session.graph_version = version + 1
    _check_tasks(graph, session, found)


def _check_tasks(graph: Graph, session: Session, found: int) -> None:
    """After migrating, every task the session may go to must exist in the graph."""
    versions = f"migrated from version {found} to {graph.version}"
    if graph.get_task(session.current_task_id) is None:
        raise GraphError(
            f"Session {quote_id(session.id)}, {versions}, is at task "
            f"{quote_id(session.current_task_id)}, which graph {quote_id(graph.id)} does not "
            "have: the migrations must rename or replace it (session.current_task_id); nothing "
            "was saved"
        )
    for task_id in session.history:
        if graph.get_task(task_id) is None:
            raise GraphError(
                f"Session {quote_id(session.id)}, {versions}, has task {quote_id(task_id)} in "
                f"its history, which graph {quote_id(graph.id)} does not have and GoBack "
                "could return to: the migrations must rename or drop it (session.history); "
                "nothing was saved"
            )
