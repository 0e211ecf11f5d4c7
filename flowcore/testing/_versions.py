"""``migrated``: a stored session of an older graph version, as a step would bring it up."""

from __future__ import annotations

from flowcore._codec import decode_session
from flowcore._graph import Graph
from flowcore._migrations import check_owner, migrate
from flowcore._session import Session

__all__ = ["migrated"]


def migrated(graph: Graph, blob: bytes, *, session_id: str = "migrated") -> Session:
    """Decode ``blob`` (a session as a backend stored it, e.g. kept from the old version of
    your workflow in your tests' data) and bring it up to ``graph.version`` with the graph's
    migrations, as the next step would; nothing is stored.

    Raises GraphError as that step would: for a session of another graph, one newer than the
    graph, a missing migration, a migration that raises, or a task the session would go to
    that the graph does not have.
    """
    session = decode_session(blob, session_id=session_id, version=1)
    check_owner(graph, session)
    migrate(graph, session)
    return session
