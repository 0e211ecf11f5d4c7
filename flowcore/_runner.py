"""FlowRunner: load a session, run one step, save it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from flowcore._context import Context
from flowcore._errors import ContextError, GraphError, SessionNotFound, TaskNotFound
from flowcore._graph import Graph
from flowcore._session import Session
from flowcore._storage import SessionStorage
from flowcore._values import ExecutionResult, ExecutionStatus

__all__ = ["FlowRunner"]

_COMPLETED_RESULT = ExecutionResult(None, ExecutionStatus.Completed)


class FlowRunner:
    """Runs a graph's sessions one step at a time, keeping them in ``storage`` between steps.

    Share one runner between requests: it holds no per-session state.
    """

    __slots__ = ("_graph", "_storage")

    def __init__(self, graph: Graph, storage: SessionStorage) -> None:
        if not isinstance(graph, Graph):
            raise TypeError(f"FlowRunner needs a flowcore.Graph, got {type(graph).__name__}")
        if not isinstance(storage, SessionStorage):
            raise TypeError(
                f"FlowRunner needs a flowcore.SessionStorage, got {type(storage).__name__}"
            )
        self._graph = graph
        self._storage = storage

    @property
    def graph(self) -> Graph:
        """The graph whose tasks the runner runs."""
        return self._graph

    @property
    def storage(self) -> SessionStorage:
        """Where the sessions are loaded from and saved to."""
        return self._storage

    async def run(
        self, session_id: str, *, context_updates: Mapping[str, Any] | None = None
    ) -> ExecutionResult:
        """Load the session, set ``context_updates`` into its context, run one step, save it.

        Raises SessionNotFound for an unknown id, and SessionConflict (saving nothing) when
        another writer saved the session after it was loaded here. A completed session runs
        nothing and returns ``ExecutionResult(None, ExecutionStatus.Completed)``.
        """
        if context_updates is not None and not isinstance(context_updates, Mapping):
            raise ContextError(
                "context_updates must be a mapping of str keys to values, got "
                f"{type(context_updates).__name__}"
            )
        storage = self._storage
        session = await storage.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        if session.is_completed:
            return _COMPLETED_RESULT
        if context_updates:
            session.context.update(context_updates)
        result = await self._graph.execute_session(session)
        await storage.save(session)
        return result

    async def create_session(
        self,
        session_id: str | None = None,
        *,
        start_task: str | None = None,
        context: Context | Mapping[str, Any] | None = None,
    ) -> Session:
        """Create and save a session at the start task (or ``start_task``).

        The id is a fresh UUID when none is given; an id already stored raises SessionConflict.
        """
        graph = self._graph
        task_id = start_task if start_task is not None else graph.start_task_id
        if task_id is None:
            raise GraphError(
                f"Graph '{graph.id}' has no tasks: add a task before creating sessions"
            )
        if graph.get_task(task_id) is None:
            raise TaskNotFound(
                task_id, f"Cannot start a session at unknown task '{task_id}' of graph '{graph.id}'"
            )
        if session_id is None:
            session_id = str(uuid.uuid4())
        session = Session.new_from_task(session_id, task_id, graph_id=graph.id, context=context)
        await self._storage.save(session)
        return session

    def __repr__(self) -> str:
        return f"<FlowRunner graph={self._graph.id!r} storage={self._storage!r}>"
