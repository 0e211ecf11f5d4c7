"""FlowRunner: load a session, run one step, save it, telling the tracers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any

from flowcore import _plugins
from flowcore._codec import encode_session
from flowcore._context import Context
from flowcore._engine import COMPLETED_RESULT, execute_session
from flowcore._errors import ContextError, GraphError, SessionNotFound, TaskNotFound
from flowcore._graph import Graph
from flowcore._handlers import Handler
from flowcore._observers import Observers
from flowcore._session import Session
from flowcore._storage import SessionStorage
from flowcore._tracing import RunEnded, RunStarted, SessionLoaded, SessionSaved, emit
from flowcore._values import ExecutionResult

__all__ = ["FlowRunner"]


class FlowRunner:
    """Runs a graph's sessions one step at a time, keeping them in ``storage`` between steps.

    Share one runner between requests: it holds no per-session state.

    ``tracers`` (:class:`flowcore.Tracer` objects) see every step and task of this runner, and
    ``error_handlers`` (callables ``(TaskFailure) -> ErrorDecision | None``) decide what a failed
    task becomes, asked before those of plugins. With ``plugins=False`` the runner ignores the
    tracers and handlers that plugins registered.
    """

    __slots__ = (
        "_error_handlers",
        "_graph",
        "_observers",
        "_plugins",
        "_registry",
        "_storage",
        "_tracers",
    )

    def __init__(
        self,
        graph: Graph,
        storage: SessionStorage,
        *,
        tracers: Iterable[object] = (),
        error_handlers: Iterable[Handler] = (),
        plugins: bool = True,
    ) -> None:
        if not isinstance(graph, Graph):
            raise TypeError(f"FlowRunner needs a flowcore.Graph, got {type(graph).__name__}")
        if not isinstance(storage, SessionStorage):
            raise TypeError(
                f"FlowRunner needs a flowcore.SessionStorage, got {type(storage).__name__}"
            )
        self._graph = graph
        self._storage = storage
        self._tracers = tuple(tracers)
        self._error_handlers = tuple(error_handlers)
        self._plugins = plugins
        self._registry: _plugins.Registry | None = None
        self._resolve()

    def _resolve(self) -> Observers:
        """Index this runner's and the plugins' tracers and handlers by event, once."""
        if not self._plugins:
            observers = Observers(self._tracers, self._error_handlers)
        else:
            registry = _plugins.registry()
            observers = Observers(
                (*registry.tracers, *self._tracers),
                (*self._error_handlers, *registry.error_handlers),
            )
            self._registry = registry
        self._observers = observers
        return observers

    def _current_observers(self) -> Observers:
        if self._plugins and self._registry is not _plugins.active_registry:
            return self._resolve()  # the plugins changed since this runner last looked
        return self._observers

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
        observers = self._current_observers()
        # Every tracer call below sits behind a check of its tuple: with no tracers, a step
        # pays for these checks and nothing else.
        graph = self._graph
        started_at = perf_counter() if observers.run_ended else 0.0
        if observers.run_started:
            emit(observers.run_started, RunStarted(session_id, graph.id))
        session: Session | None = None
        try:
            storage = self._storage
            session = await storage.get(session_id)
            if session is None:
                raise SessionNotFound(session_id)
            if observers.session_loaded:
                emit(observers.session_loaded, _session_event(SessionLoaded, session, graph.id))
            if session.is_completed:
                result = COMPLETED_RESULT
            else:
                if context_updates:
                    session.context.update(context_updates)
                result = await execute_session(graph, session, observers.step)
                await storage.save(session)
                if observers.session_saved:
                    emit(observers.session_saved, _session_event(SessionSaved, session, graph.id))
        except BaseException as exc:
            if observers.run_ended:
                emit(
                    observers.run_ended,
                    _ended(session_id, graph.id, session, None, exc, started_at),
                )
            raise
        if observers.run_ended:
            emit(
                observers.run_ended, _ended(session_id, graph.id, session, result, None, started_at)
            )
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
        observers = self._current_observers()
        if observers.session_saved:
            emit(observers.session_saved, _session_event(SessionSaved, session, graph.id))
        return session

    def __repr__(self) -> str:
        return f"<FlowRunner graph={self._graph.id!r} storage={self._storage!r}>"


def _session_event(
    event: type[SessionLoaded | SessionSaved], session: Session, graph_id: str
) -> SessionLoaded | SessionSaved:
    """The event for a session just loaded or saved; its blob size is measured by the codec."""
    blob_size = len(encode_session(session))
    return event(session.id, graph_id, session.current_task_id, session.version, blob_size)


def _ended(
    session_id: str,
    graph_id: str,
    session: Session | None,
    result: ExecutionResult | None,
    error: BaseException | None,
    started_at: float,
) -> RunEnded:
    task_id = None if session is None else session.current_task_id
    return RunEnded(session_id, graph_id, task_id, result, error, perf_counter() - started_at)
