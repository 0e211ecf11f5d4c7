"""What a FlowRunner calls during a step: its tracers' methods per event, and its error handlers.

Resolved once from the tracers and handlers (and again only when the plugins change), so a step
checks a tuple per event and calls only what is there: with no tracer and no handler, nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flowcore._handlers import Handler, applies, check_handler
from flowcore._task import Task
from flowcore._tracing import tracer_methods

__all__ = ["NO_OBSERVERS", "Observers"]

_Methods = tuple[Callable[[Any], object], ...]


class Observers:
    """Per event, the tracer methods to call; the error handlers, in the order they are asked.

    ``traces_tasks``: some tracer listens to a task-level event. ``observes_tasks``: that, or
    some error handler is present; else the engine runs every task on its plain path.
    """

    __slots__ = (
        "_by_task",
        "error_handled",
        "error_handlers",
        "observes_tasks",
        "run_ended",
        "run_started",
        "session_loaded",
        "session_saved",
        "task_ended",
        "task_retrying",
        "task_started",
        "traces_tasks",
    )

    def __init__(self, tracers: Iterable[object], handlers: Iterable[Handler]) -> None:
        """Raises TypeError for a tracer with no event method, or a handler that is no callable."""
        by_event: dict[str, list[Callable[[Any], object]]] = {}
        for tracer in tracers:
            for event, method in tracer_methods(tracer).items():
                by_event.setdefault(event, []).append(method)

        def methods(event: str) -> _Methods:
            return tuple(by_event.get(event, ()))

        self.run_started = methods("run_started")
        self.session_loaded = methods("session_loaded")
        self.task_started = methods("task_started")
        self.task_retrying = methods("task_retrying")
        self.error_handled = methods("error_handled")
        self.task_ended = methods("task_ended")
        self.session_saved = methods("session_saved")
        self.run_ended = methods("run_ended")
        self.error_handlers: tuple[Handler, ...] = tuple(check_handler(h) for h in handlers)
        self.traces_tasks = bool(
            self.task_started or self.task_retrying or self.error_handled or self.task_ended
        )
        self.observes_tasks = self.traces_tasks or bool(self.error_handlers)
        self._by_task: dict[int, tuple[Task, tuple[Handler, ...]]] = {}

    def handlers_for(self, task: Task) -> tuple[Handler, ...]:
        """The handlers that apply to ``task``, asked once per task object."""
        if not self.error_handlers:
            return ()
        cached = self._by_task.get(id(task))
        if cached is not None and cached[0] is task:
            return cached[1]
        handlers = tuple(h for h in self.error_handlers if applies(h, task))
        self._by_task[id(task)] = (task, handlers)
        return handlers


NO_OBSERVERS = Observers((), ())
"""No tracer and no error handler (a step run by ``Graph.execute_session``)."""
