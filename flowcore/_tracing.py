"""Tracers: what a FlowRunner reports while it runs a step, and the events it reports.

A tracer is an object with any of the :class:`Tracer` methods; each takes one event. The runner
looks up which methods a tracer has once (:func:`tracer_methods`) and then calls only those, so an
event nobody listens to is never even built.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flowcore._errors import TaskExecutionFailed
from flowcore._hooks import hookimpl
from flowcore._values import ExecutionResult, NextAction, TaskResult

__all__ = [
    "TRACER_EVENTS",
    "ErrorHandled",
    "RunEnded",
    "RunStarted",
    "SessionLoaded",
    "SessionSaved",
    "TaskEnded",
    "TaskRetrying",
    "TaskStarted",
    "Tracer",
    "emit",
    "tracer_methods",
]

_log = logging.getLogger("flowcore.tracing")

# Events are built only for tracers that listen, and shared between them: slotted dataclasses
# (cheap to build) rather than frozen ones (five times dearer). Treat them as read-only.


@dataclasses.dataclass(slots=True)
class RunStarted:
    """``FlowRunner.run`` was called, before the session is loaded (``graph_version``: the
    version of the runner's graph)."""

    session_id: str
    graph_id: str
    graph_version: int = 1


@dataclasses.dataclass(slots=True)
class _SessionIO:
    """What the backend read or wrote of a session: the fields of SessionLoaded and SessionSaved."""

    session_id: str
    graph_id: str
    task_id: str
    version: int
    blob_size: int
    duration: float = 0.0


@dataclasses.dataclass(slots=True)
class SessionLoaded(_SessionIO):
    """The runner loaded the session (``version`` as stored, ``task_id`` its current task).

    ``blob_size`` is the length in bytes of the blob the backend read: the session as
    ``flowcore.codec`` encodes it, which every backend that uses the codec stores (the id and
    version live beside it); for a backend that stores sessions another way, the codec's
    encoding is measured. ``duration`` is how long the backend took, in seconds.
    """


@dataclasses.dataclass(slots=True)
class TaskStarted:
    """A task of the step is about to run (its first attempt)."""

    session_id: str
    graph_id: str
    task_id: str


@dataclasses.dataclass(slots=True)
class TaskRetrying:
    """Attempt ``attempt`` (1 for the first) failed with ``error``; the next starts after ``delay``
    seconds, on the context restored to what it was before the first attempt."""

    session_id: str
    graph_id: str
    task_id: str
    attempt: int
    error: TaskExecutionFailed
    delay: float


@dataclasses.dataclass(slots=True)
class ErrorHandled:
    """Error handler ``handler`` decided what the failure of attempt ``attempt`` becomes."""

    session_id: str
    graph_id: str
    task_id: str
    attempt: int
    error: TaskExecutionFailed
    handler: Any
    decision: Any  # an ErrorDecision


@dataclasses.dataclass(slots=True)
class TaskEnded:
    """A task of the step finished, after ``attempts`` attempts taking ``duration`` seconds.

    ``result`` is what the task returned (or what an error handler routed the failure to);
    ``error`` is the failure, if the last attempt failed (then ``result`` is None unless routed).
    """

    session_id: str
    graph_id: str
    task_id: str
    result: TaskResult | None
    error: BaseException | None
    duration: float
    attempts: int

    @property
    def next_action(self) -> NextAction | None:
        """The result's next action, or None when the task failed."""
        return None if self.result is None else self.result.next_action

    @property
    def status_message(self) -> str | None:
        """The result's status message, or None when the task failed."""
        return None if self.result is None else self.result.status_message

    @property
    def status(self) -> str:
        """The next action as text (``"Continue"``, ``"GoTo(review)"``...), or ``"failed"``."""
        return "failed" if self.result is None else str(self.result.next_action)

    @property
    def duration_ms(self) -> float:
        """``duration`` in milliseconds."""
        return self.duration * 1000.0


@dataclasses.dataclass(slots=True)
class SessionSaved(_SessionIO):
    """The runner saved the session as ``version``; ``blob_size`` (what the backend wrote) and
    ``duration`` (seconds the save took) as in :class:`SessionLoaded`."""


@dataclasses.dataclass(slots=True)
class RunEnded:
    """``FlowRunner.run`` returned ``result`` or raised ``error`` after ``duration`` seconds.

    ``task_id`` is the session's current task at the end (None if it was never loaded);
    ``graph_version`` the version of the runner's graph, which a step brings the session to.
    """

    session_id: str
    graph_id: str
    task_id: str | None
    result: ExecutionResult | None
    error: BaseException | None
    duration: float
    graph_version: int = 1

    @property
    def status(self) -> str:
        """The step's status name (``"Completed"``, ``"Paused"``, ``"Error"``...), or ``"failed"``
        when ``run`` raised."""
        return "failed" if self.result is None else self.result.status.name

    @property
    def duration_ms(self) -> float:
        """``duration`` in milliseconds."""
        return self.duration * 1000.0


class Tracer:
    """Base class for tracers: override the methods for the events you want; the rest cost nothing.

    Methods are plain (not async) and called inline, in this order for a step::

        run_started, session_loaded,
            task_started, [task_retrying | error_handled]..., task_ended,   (per task)
        session_saved, run_ended

    A run that raises skips what did not happen, and still ends with ``run_ended``. Start and
    end of one run are called in the same asyncio task, so per-run state can live in a
    ``contextvars.ContextVar``. An exception in a tracer is logged (logger ``flowcore.tracing``)
    and does not change the step. A tracer is also a plugin: ``flowcore.register_plugin(tracer)``
    adds it to every FlowRunner.
    """

    def run_started(self, event: RunStarted) -> None:
        """``FlowRunner.run`` was called."""

    def session_loaded(self, event: SessionLoaded) -> None:
        """The session was loaded."""

    def task_started(self, event: TaskStarted) -> None:
        """A task is about to run."""

    def task_retrying(self, event: TaskRetrying) -> None:
        """A task attempt failed and the task is tried again."""

    def error_handled(self, event: ErrorHandled) -> None:
        """An error handler decided what a task failure becomes."""

    def task_ended(self, event: TaskEnded) -> None:
        """A task finished, with a result or an error."""

    def session_saved(self, event: SessionSaved) -> None:
        """The session was saved."""

    def run_ended(self, event: RunEnded) -> None:
        """``FlowRunner.run`` returned or raised."""

    @hookimpl
    def flowcore_register_tracers(self, register: Callable[[object], None]) -> None:
        """As a plugin, a tracer registers itself."""
        register(self)


TRACER_EVENTS: tuple[str, ...] = (
    "run_started",
    "session_loaded",
    "task_started",
    "task_retrying",
    "error_handled",
    "task_ended",
    "session_saved",
    "run_ended",
)
"""The names of the tracer methods, in the order a step calls them."""


def tracer_methods(tracer: object) -> Mapping[str, Callable[[Any], object]]:
    """The event methods ``tracer`` implements, by event name (a Tracer's no-op defaults left out).

    Raises TypeError for a tracer that implements none, or an ``async def`` one.
    """
    methods: dict[str, Callable[[Any], object]] = {}
    for name in TRACER_EVENTS:
        method = getattr(tracer, name, None)
        if method is None or getattr(method, "__func__", None) is getattr(Tracer, name):
            continue  # absent, or the no-op default
        if not callable(method):
            raise TypeError(f"tracer {describe(tracer)}: {name} must be a method, got {method!r}")
        if inspect.iscoroutinefunction(method):
            raise TypeError(
                f"tracer {describe(tracer)}: {name} is async; tracer methods are called inline "
                "and must be plain functions (hand slow work to a queue or a thread)"
            )
        methods[name] = method
    if not methods:
        raise TypeError(
            f"{describe(tracer)} is not a tracer: it has none of the methods "
            f"{', '.join(TRACER_EVENTS)} (subclass flowcore.Tracer and override some)"
        )
    return methods


def describe(obj: object) -> str:
    """A short name for a tracer or handler in messages: its class, or its function name."""
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def emit(methods: tuple[Callable[[Any], object], ...], event: object) -> None:
    """Call each tracer method with ``event``; a tracer that raises is logged, not propagated."""
    for method in methods:
        try:
            method(event)
        except Exception:
            _log.exception(
                "tracer %s raised in %s; the step goes on",
                describe(getattr(method, "__self__", method)),
                getattr(method, "__name__", "?"),
            )
