"""Task, the @task decorator and RetryPolicy."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, overload

from flowcore._context import Context
from flowcore._values import TaskResult

__all__ = ["ChildRunner", "FunctionTask", "ParentTask", "RetryPolicy", "Task", "task"]

TaskFunction = Callable[[Context], TaskResult | Awaitable[TaskResult]]


class _DefaultTaskId:
    """``Task.id`` when a subclass sets none: ``"<module>.<qualname>"`` of its class.

    A non-data descriptor, so a subclass may override ``id`` with a class attribute, a property,
    or an instance attribute set in ``__init__``.
    """

    def __get__(self, instance: object, owner: type | None = None) -> str:
        cls = owner if owner is not None else type(instance)
        return f"{cls.__module__}.{cls.__qualname__}"


class RetryPolicy:
    """How often, and after what delay, a failed task attempt is tried again.

    The delay before attempt ``n + 1`` is ``initial_delay * multiplier ** (n - 1)``, capped at
    ``max_delay``; with ``jitter`` it is drawn uniformly between half of that and all of it.
    Only exceptions that are instances of ``retry_on`` are retried (a timeout counts as
    ``TimeoutError``). Before each new attempt the context is restored to what it was before
    the first one.
    """

    __slots__ = ("initial_delay", "jitter", "max_attempts", "max_delay", "multiplier", "retry_on")

    def __init__(
        self,
        max_attempts: int = 3,
        initial_delay: float = 0.1,
        multiplier: float = 2.0,
        max_delay: float = 10.0,
        jitter: bool = True,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if type(max_attempts) is not int or max_attempts < 1:
            raise ValueError(f"RetryPolicy max_attempts must be an int >= 1, got {max_attempts!r}")
        for name, value in (
            ("initial_delay", initial_delay),
            ("multiplier", multiplier),
            ("max_delay", max_delay),
        ):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"RetryPolicy {name} must be a finite number >= 0, got {value!r}")
        classes: tuple[object, ...] = (
            (retry_on,) if isinstance(retry_on, type) else tuple(retry_on)  # type: ignore[unreachable]
        )
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in classes):
            raise ValueError(f"RetryPolicy retry_on must be exception classes, got {retry_on!r}")
        self.max_attempts = max_attempts
        self.initial_delay = float(initial_delay)
        self.multiplier = float(multiplier)
        self.max_delay = float(max_delay)
        self.jitter = bool(jitter)
        self.retry_on: tuple[type[BaseException], ...] = classes  # type: ignore[assignment]

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures before the next attempt."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (failed_attempts - 1))
        if self.jitter:
            return random.uniform(base / 2, base)
        return base

    def should_retry(self, error: BaseException, failed_attempts: int) -> bool:
        """Whether to try again after ``failed_attempts`` failures, the last one ``error``."""
        return failed_attempts < self.max_attempts and isinstance(error, self.retry_on)

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self.retry_on)
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, initial_delay={self.initial_delay}, "
            f"multiplier={self.multiplier}, max_delay={self.max_delay}, jitter={self.jitter}, "
            f"retry_on=({names},))"
        )


class Task:
    """A step of a workflow. Subclass it and define ``run(self, ctx) -> TaskResult``.

    ``run`` may be ``async def`` or a plain ``def`` (run inline, with no event-loop round trip).
    ``id`` defaults to ``"<module>.<qualname>"`` of the class; set it as a class attribute, a
    property or an instance attribute. ``timeout`` (seconds, None = the graph's) and ``retry``
    (a RetryPolicy) are optional. Subclasses need not call ``Task.__init__``.
    """

    if TYPE_CHECKING:
        id: str
    else:
        id = _DefaultTaskId()
    timeout: float | None = None
    retry: RetryPolicy | None = None

    def run(self, ctx: Context) -> TaskResult | Awaitable[TaskResult]:
        """Do the task's work on ``ctx`` and say what comes next."""
        raise NotImplementedError(f"{type(self).__qualname__} must define run(self, ctx)")

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} id={self.id!r}>"


ChildRunner = Callable[[Task, Context], Awaitable[TaskResult]]
"""``run_child(task, ctx)``: run a task inside another, under its own timeout and retry policy."""


class ParentTask(Task):
    """A task that runs tasks of its own (a FanOutTask): the engine hands it the function that
    runs each child, so the step's tracers see the children too."""

    async def _run_children(self, ctx: Context, run_child: ChildRunner) -> TaskResult:
        """Do the task's work on ``ctx``, running each child with ``run_child``."""
        raise NotImplementedError(
            f"{type(self).__qualname__} must define _run_children(self, ctx, run_child)"
        )


class FunctionTask(Task):
    """A Task made from a function by :func:`task`."""

    def __init__(
        self,
        fn: TaskFunction,
        id: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function (ctx) -> TaskResult, got {type(fn).__name__}")
        self.id = id if id is not None else f"{fn.__module__}.{fn.__qualname__}"
        self.timeout = timeout
        self.retry = retry
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        # The engine calls task.run(ctx): bind the function itself, so a call costs nothing extra.
        self.run = fn  # type: ignore[method-assign, assignment]

    def __repr__(self) -> str:
        kind = "async " if inspect.iscoroutinefunction(self.__wrapped__) else ""
        return f"<{kind}task {self.id!r}>"


@overload
def task(fn: TaskFunction, /) -> FunctionTask: ...


@overload
def task(
    id: str | None = None, *, timeout: float | None = None, retry: RetryPolicy | None = None
) -> Callable[[TaskFunction], FunctionTask]: ...


def task(id: Any = None, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> Any:
    """Turn a function ``(ctx) -> TaskResult`` (sync or async) into a Task.

    Use it bare (``@task``: the id is ``"<module>.<qualname>"`` of the function) or called
    (``@task("classify", timeout=5)``).
    """
    if callable(id):
        return FunctionTask(id)
    if id is not None and type(id) is not str:
        raise TypeError(f"task id must be a str, got {type(id).__name__}: {id!r}")

    def decorate(fn: TaskFunction) -> FunctionTask:
        return FunctionTask(fn, id, timeout=timeout, retry=retry)

    return decorate
