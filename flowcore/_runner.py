"""FlowRunner: load a session, run one step, save it, telling the tracers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from time import perf_counter
from typing import Any

from flowcore import _plugins
from flowcore._codec import encode_session
from flowcore._context import Context
from flowcore._engine import held, run_step
from flowcore._errors import (
    ContextError,
    GraphError,
    SessionConflict,
    SessionMoved,
    SessionNotFound,
    TaskNotFound,
    quote_id,
)
from flowcore._graph import Graph
from flowcore._handlers import Handler
from flowcore._migrations import check_owner, migrate
from flowcore._observers import Observers
from flowcore._requests import check_request_id, find_request, record_request
from flowcore._session import Session
from flowcore._storage import SessionStorage
from flowcore._stream import END_OF_STEP, STREAMING, StepEvent, StreamSink, stream_sink
from flowcore._tracing import RunEnded, RunStarted, SessionLoaded, SessionSaved, emit
from flowcore._values import ExecutionResult, as_replayed, set_version

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
        self,
        session_id: str,
        *,
        context_updates: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        expect_task: str | None = None,
        expect_version: int | None = None,
    ) -> ExecutionResult:
        """Load the session, set ``context_updates`` into its context, run one step, save it.

        Raises SessionNotFound for an unknown id, and SessionConflict (saving nothing) when
        another writer saved the session after it was loaded here. A completed session runs
        nothing and returns ``ExecutionResult(None, ExecutionStatus.Completed)``; one waiting
        for a time still to come runs nothing and returns its ``Scheduled`` status.

        ``request_id`` makes the step exactly-once for that id: a request id the session has
        recorded returns the recorded result (``replayed=True``) and runs nothing, and a run
        that loses the race to a writer that recorded it returns that writer's result.
        ``expect_task`` / ``expect_version``: run only if the session, as loaded, is at that
        task / that stored version; otherwise raise SessionMoved and run nothing.
        """
        if (
            request_id is not None
            or expect_task is not None
            or expect_version is not None
            or (context_updates is not None and not isinstance(context_updates, Mapping))
        ):
            _check_arguments(context_updates, request_id, expect_task, expect_version)
        # The step runs here, not in a coroutine this one awaits: each coroutine in between
        # would cost a step about a third of what the engine itself costs.
        # A stream's sink, set for a step that FlowRunner.stream runs (looked up only while
        # some stream runs: a context variable costs a plain step a few percent).
        sink = stream_sink.get() if STREAMING else None
        if sink is not None:
            if sink.claimed:
                sink = None  # a run inside a streamed step's task is not the streamed step
            else:
                sink.claimed = True
        observers = self._current_observers()
        # Every tracer call below sits behind a check of its tuple: with no tracers, a step
        # pays for these checks and nothing else.
        graph = self._graph
        started_at = perf_counter() if observers.run_ended else 0.0
        if observers.run_started:
            emit(observers.run_started, RunStarted(session_id, graph.id, graph.version))
        session: Session | None = None
        leader: _Leader | None = None
        result: ExecutionResult | None = None
        try:
            if request_id is not None:
                duplicate, leader = await _join_in_flight(self._storage, session_id, request_id)
                if duplicate is not None:
                    result = duplicate
                    raise _Answered
            storage = self._storage
            if observers.session_loaded:
                io_started = perf_counter()
                session = await storage.get(session_id)
                if session is None:
                    raise SessionNotFound(session_id)
                check_owner(graph, session)
                emit(
                    observers.session_loaded,
                    _session_event(SessionLoaded, session, graph.id, io_started),
                )
            else:
                session = await storage.get(session_id)
                if session is None:
                    raise SessionNotFound(session_id)
                check_owner(graph, session)
            if request_id is not None:
                result = find_request(session, request_id)
            if result is None:
                if expect_task is not None or expect_version is not None:
                    _check_expected(session, expect_task, expect_version)
                if session.is_completed or session.wake_at is not None:
                    result = held(session)
            if result is None:
                if session.graph_version != graph.version:
                    migrate(graph, session)  # saved with the step, or not at all
                if context_updates:
                    session.context.update(context_updates)
                version = session.version + 1  # what a save stores it as
                step = graph._start_step(session, version)
                result = await run_step(step, observers, sink)
                if request_id is not None:
                    record_request(session, request_id, result, version)
                if observers.session_saved:
                    session._stored_size = None  # what this save writes, not what was read
                    io_started = perf_counter()
                try:
                    await storage.save(session)
                except SessionConflict:
                    if request_id is None:
                        raise
                    # Lost the race: to a duplicate of this request, whose result it returns?
                    winner = await storage.get(session_id)
                    recorded = None if winner is None else find_request(winner, request_id)
                    if recorded is None:
                        raise
                    session = winner
                    result = recorded
                else:
                    if session.version != version:  # a backend that numbers versions its way
                        set_version(result, session.version)
                    if observers.session_saved:
                        emit(
                            observers.session_saved,
                            _session_event(SessionSaved, session, graph.id, io_started),
                        )
        except _Answered:
            pass  # a duplicate of a request running in this process: its result
        except BaseException as exc:
            if leader is not None:
                leader.fail(exc)
            if observers.run_ended:
                emit(
                    observers.run_ended,
                    _ended(session_id, graph, session, None, exc, started_at),
                )
            raise
        if leader is not None:
            leader.succeed(result)  # type: ignore[arg-type]  # every path here set it
        if observers.run_ended:
            emit(observers.run_ended, _ended(session_id, graph, session, result, None, started_at))
        return result  # type: ignore[return-value]  # every path here set it

    def stream(
        self,
        session_id: str,
        *,
        context_updates: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        expect_task: str | None = None,
        expect_version: int | None = None,
    ) -> AsyncIterator[StepEvent | ExecutionResult]:
        """The step ``run`` takes, as an async iterator of its events as they happen.

        Yields a :class:`StepEvent` when a task starts (``"task_started"``), for each value a
        task emits with :func:`flowcore.emit` (``"output"``) and when a task ends
        (``"task_ended"``, its TaskRecord), and last the step's ExecutionResult. The step is as
        atomic as with ``run``: if it fails, the iterator raises its error and nothing is
        saved; if the consumer stops early (``aclose()``, or its task is cancelled), the step
        is cancelled and nothing is saved. Arguments are checked here, before iterating.
        """
        _check_arguments(context_updates, request_id, expect_task, expect_version)
        return self._stream(session_id, context_updates, request_id, expect_task, expect_version)

    async def _stream(
        self,
        session_id: str,
        context_updates: Mapping[str, Any] | None,
        request_id: str | None,
        expect_task: str | None,
        expect_version: int | None,
    ) -> AsyncIterator[StepEvent | ExecutionResult]:
        sink = StreamSink()
        STREAMING.add(sink)
        token = stream_sink.set(sink)
        try:  # the step's task copies the context as it is now: flowcore.emit finds the sink
            step = asyncio.ensure_future(
                self.run(
                    session_id,
                    context_updates=context_updates,
                    request_id=request_id,
                    expect_task=expect_task,
                    expect_version=expect_version,
                )
            )
        finally:
            stream_sink.reset(token)
        step.add_done_callback(sink.finish)
        try:
            while True:
                items = await sink.next_items()
                item = items.popleft()
                if item is END_OF_STEP:
                    break
                yield item
            yield step.result()
        finally:
            STREAMING.discard(sink)
            if not step.done():
                step.cancel()  # the consumer stopped early: the step stops, nothing is saved
                await asyncio.wait((step,))
            if not step.cancelled():
                step.exception()  # seen here, so asyncio does not log it as never retrieved

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
        session.graph_version = graph.version
        io_started = perf_counter()
        await self._storage.save(session)
        observers = self._current_observers()
        if observers.session_saved:
            emit(
                observers.session_saved,
                _session_event(SessionSaved, session, graph.id, io_started),
            )
        return session

    def __repr__(self) -> str:
        return f"<FlowRunner graph={self._graph.id!r} storage={self._storage!r}>"


class _Answered(Exception):
    """Raised inside ``run`` when a duplicate's result answers the call: nothing more to do."""


class _Leader:
    """The first run of a request id in flight in this process; duplicates wait for it."""

    __slots__ = ("future", "key", "loop")

    def __init__(self, key: tuple[int, str, str], loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self.future: asyncio.Future[ExecutionResult] = loop.create_future()
        _IN_FLIGHT[key] = self

    def _leave(self) -> None:
        if _IN_FLIGHT.get(self.key) is self:
            del _IN_FLIGHT[self.key]

    def succeed(self, result: ExecutionResult) -> None:
        self._leave()
        self.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        self._leave()
        self.future.set_exception(exc)
        self.future.exception()  # the waiters look at it; nobody else need


# The runs of request ids in flight, by (id of the storage, session id, request id).
_IN_FLIGHT: dict[tuple[int, str, str], _Leader] = {}


async def _join_in_flight(
    storage: SessionStorage, session_id: str, request_id: str
) -> tuple[ExecutionResult | None, _Leader | None]:
    """A duplicate of a request that runs now in this process (on this storage and event loop)
    waits for it and gets its result, rather than running the tasks again only to lose the
    compare-and-set race: ``(result, None)``. Otherwise this run leads: ``(None, leader)``, or
    ``(None, None)`` when the run it waited for failed (nothing of it was saved) and it runs for
    itself."""
    key = (id(storage), session_id, request_id)
    loop = asyncio.get_running_loop()
    first = _IN_FLIGHT.get(key)
    if first is None or first.loop is not loop:
        return None, _Leader(key, loop)
    try:
        result = await asyncio.shield(first.future)
    except BaseException:
        if not first.future.done():
            raise  # this caller was cancelled
        return None, None
    return as_replayed(result), None


def _check_arguments(
    context_updates: object, request_id: object, expect_task: object, expect_version: object
) -> None:
    """Raise for an argument of ``run`` or ``stream`` that is of no use, naming it."""
    if context_updates is not None and not isinstance(context_updates, Mapping):
        raise ContextError(
            "context_updates must be a mapping of str keys to values, got "
            f"{type(context_updates).__name__}"
        )
    if request_id is not None:
        check_request_id(request_id)
    if expect_task is not None and type(expect_task) is not str:
        raise TypeError(
            f"expect_task must be None or a task id (str), got {type(expect_task).__name__}: "
            f"{quote_id(expect_task)}"
        )
    if expect_version is not None and type(expect_version) is not int:
        raise TypeError(
            f"expect_version must be None or an int (a stored version), got "
            f"{type(expect_version).__name__}: {quote_id(expect_version)}"
        )


def _check_expected(session: Session, expect_task: str | None, expect_version: int | None) -> None:
    """Raise SessionMoved if the loaded session is not at the task and version expected."""
    if expect_version is not None and session.version != expect_version:
        raise SessionMoved(session.id, "version", expect_version, session.version)
    if expect_task is not None and session.current_task_id != expect_task:
        raise SessionMoved(session.id, "task", expect_task, session.current_task_id)


def _session_event(
    event: type[SessionLoaded | SessionSaved],
    session: Session,
    graph_id: str,
    io_started: float,
) -> SessionLoaded | SessionSaved:
    """The event for a session the backend just read or wrote (since ``io_started``).

    The blob size is the one the codec recorded when the backend decoded or encoded the
    session; a backend that stores sessions its own way leaves none, and the codec measures.
    """
    duration = perf_counter() - io_started
    blob_size = session._stored_size
    if blob_size is None:
        blob_size = len(encode_session(session))
    return event(
        session.id, graph_id, session.current_task_id, session.version, blob_size, duration
    )


def _ended(
    session_id: str,
    graph: Graph,
    session: Session | None,
    result: ExecutionResult | None,
    error: BaseException | None,
    started_at: float,
) -> RunEnded:
    task_id = None if session is None else session.current_task_id
    duration = perf_counter() - started_at
    return RunEnded(session_id, graph.id, task_id, result, error, duration, graph.version)
