"""Error handlers: what a task failure becomes (retry, route, report) instead of raising.

A handler is a callable ``(TaskFailure) -> ErrorDecision | None`` (plain or async), such as an
:class:`ErrorHandler`. A runner asks its handlers in order when a task fails (after the task's
own RetryPolicy has given up); the first decision wins, None passes the failure on, and with no
decision the failure is raised.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import ClassVar, TypeAlias

from flowcore._context import Context
from flowcore._errors import TaskExecutionFailed
from flowcore._hooks import hookimpl
from flowcore._task import Task
from flowcore._tracing import describe
from flowcore._values import NextAction

__all__ = [
    "ErrorDecision",
    "ErrorHandler",
    "Handler",
    "TaskFailure",
    "applies",
    "check_handler",
    "decide",
]


@dataclasses.dataclass(slots=True)
class TaskFailure:
    """A failed attempt of a task, as an error handler sees it.

    ``error`` is the TaskExecutionFailed (the task's exception is ``error.__cause__``);
    ``attempt`` counts from 1. ``context`` is the session's context as the failed attempt left
    it, while the handler runs; whatever the decision, those changes (and any the handler
    makes) are discarded.
    """

    session_id: str
    graph_id: str
    task_id: str
    task: Task
    error: TaskExecutionFailed
    attempt: int
    context: Context

    @property
    def cause(self) -> BaseException | None:
        """The exception the task raised (a TimeoutError for a timeout)."""
        return self.error.__cause__

    @property
    def timed_out(self) -> bool:
        """Whether the attempt failed by running out of time."""
        return isinstance(self.error.__cause__, TimeoutError)


class ErrorDecision:
    """What a handler decides a failure becomes. Use the four kinds::

        ErrorDecision.Retry(delay=0.0)       run the task again (on the restored context)
        ErrorDecision.Route(next_action)     carry on as if the task returned next_action
        ErrorDecision.Report(message=None)   end the step with ExecutionStatus.Error(message)
        ErrorDecision.Raise                  raise the failure (what happens with no decision)

    Retry, Route and Report discard the failed attempt's changes to the context. Route goes on
    as if the task returned ``TaskResult(response, next_action, status_message)`` (the status
    message defaults to the error message); Report saves the session with the failed task still
    current and ``status_message`` set to the message (default: the error message).
    Decisions compare by value and work in ``match``.
    """

    __slots__ = ()

    Retry: ClassVar[type[Retry]]
    Route: ClassVar[type[Route]]
    Report: ClassVar[type[Report]]
    Raise: ClassVar[ErrorDecision]

    def _key(self) -> tuple[object, ...]:
        return ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ErrorDecision):
            return NotImplemented
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        return "ErrorDecision.Raise"


class Retry(ErrorDecision):
    """``ErrorDecision.Retry(delay=0.0)``: run the task again after ``delay`` seconds."""

    __slots__ = ("delay",)
    __match_args__ = ("delay",)

    def __init__(self, delay: float = 0.0) -> None:
        if not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"Retry delay must be a finite number >= 0, got {delay!r}")
        self.delay = float(delay)

    def _key(self) -> tuple[object, ...]:
        return (self.delay,)

    def __repr__(self) -> str:
        return f"ErrorDecision.Retry(delay={self.delay!r})"


class Route(ErrorDecision):
    """``ErrorDecision.Route(next_action, *, response=None, status_message=None)``."""

    __slots__ = ("next_action", "response", "status_message")
    __match_args__ = ("next_action",)

    def __init__(
        self,
        next_action: NextAction,
        *,
        response: str | None = None,
        status_message: str | None = None,
    ) -> None:
        if not isinstance(next_action, NextAction):
            raise TypeError(
                "Route needs a NextAction such as NextAction.GoTo('fallback'), got "
                f"{type(next_action).__name__}: {next_action!r}"
            )
        self.next_action = next_action
        self.response = response
        self.status_message = status_message

    def _key(self) -> tuple[object, ...]:
        return (self.next_action, self.response, self.status_message)

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("response", self.response),
                ("status_message", self.status_message),
            )
            if value is not None
        )
        return f"ErrorDecision.Route({self.next_action!r}{extra})"


class Report(ErrorDecision):
    """``ErrorDecision.Report(message=None)``: the step returns ``ExecutionStatus.Error``."""

    __slots__ = ("message",)
    __match_args__ = ("message",)

    def __init__(self, message: str | None = None) -> None:
        if message is not None and type(message) is not str:
            raise TypeError(f"Report message must be a str or None, got {message!r}")
        self.message = message

    def _key(self) -> tuple[object, ...]:
        return (self.message,)

    def __repr__(self) -> str:
        return f"ErrorDecision.Report({self.message!r})"


ErrorDecision.Retry = Retry
ErrorDecision.Route = Route
ErrorDecision.Report = Report
ErrorDecision.Raise = ErrorDecision()
for _kind in (Retry, Route, Report):  # reprs and tracebacks say flowcore.ErrorDecision.Retry
    _kind.__qualname__ = f"ErrorDecision.{_kind.__name__}"
    _kind.__module__ = "flowcore"
del _kind

Handler: TypeAlias = Callable[[TaskFailure], ErrorDecision | Awaitable[ErrorDecision | None] | None]
"""``handler(failure) -> ErrorDecision | None``, plain or async."""


class ErrorHandler:
    """Base class for error handlers: override ``handle``, and ``applies_to`` to skip tasks.

    Any callable ``(failure) -> ErrorDecision | None`` is a handler; this class adds
    ``applies_to(task)``, which the runner asks once per task (and again when the plugins
    change). A task no handler applies to runs as if there were none: with no snapshot of its
    context, which every handled task needs for Retry, Route and Report. An ErrorHandler is also
    a plugin: ``flowcore.register_plugin(handler)`` adds it to every FlowRunner.
    """

    def applies_to(self, task: Task) -> bool:
        """Whether failures of ``task`` are this handler's to decide (default: every task)."""
        return True

    def handle(
        self, failure: TaskFailure
    ) -> ErrorDecision | Awaitable[ErrorDecision | None] | None:
        """What ``failure`` becomes; None leaves it to the next handler. May be ``async``."""
        raise NotImplementedError(f"{type(self).__qualname__} must define handle(self, failure)")

    def __call__(
        self, failure: TaskFailure
    ) -> ErrorDecision | Awaitable[ErrorDecision | None] | None:
        return self.handle(failure)

    @hookimpl
    def flowcore_register_error_handlers(self, register: Callable[[Handler], None]) -> None:
        """As a plugin, a handler registers itself."""
        register(self)


def applies(handler: Handler, task: Task) -> bool:
    """Whether ``handler`` handles failures of ``task`` (its ``applies_to``, if it has one)."""
    applies_to = getattr(handler, "applies_to", None)
    return applies_to is None or bool(applies_to(task))


async def decide(
    handlers: tuple[Handler, ...], failure: TaskFailure
) -> tuple[Handler, ErrorDecision] | None:
    """The first handler that decides, with its decision; None when none does."""
    for handler in handlers:
        decision = handler(failure)
        if inspect.isawaitable(decision):
            decision = await decision
        if decision is None:
            continue
        if not isinstance(decision, ErrorDecision):
            raise TypeError(
                f"error handler {describe(handler)} returned {type(decision).__name__}: "
                f"{decision!r}; return an ErrorDecision (Retry, Route, Report, Raise) or None"
            )
        return handler, decision
    return None


def check_handler(handler: object) -> Handler:
    """``handler``, if it can be an error handler; TypeError otherwise."""
    if not callable(handler):
        raise TypeError(
            f"an error handler must be callable (failure) -> ErrorDecision | None, got "
            f"{type(handler).__name__}: {handler!r}"
        )
    return handler
