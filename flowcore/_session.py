"""Session: one run of a workflow, as it is stored between steps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowcore._context import Context
from flowcore._errors import ContextError, quote_id

__all__ = ["HISTORY_LIMIT", "RECENT_REQUESTS", "Session"]

HISTORY_LIMIT = 100
"""How many ids of tasks left a session remembers for GoBack."""

RECENT_REQUESTS = 8
"""How many request ids (``FlowRunner.run(request_id=...)``) a session remembers, newest last."""


class Session:
    """The state of one workflow run: where it is, its context, and its stored version.

    Make one with :meth:`Session.new_from_task` or ``FlowRunner.create_session``.
    """

    __slots__ = (
        "_requests",
        "_stored_size",
        "context",
        "current_task_id",
        "graph_id",
        "graph_version",
        "history",
        "id",
        "is_completed",
        "status_message",
        "version",
        "wake_at",
    )

    def __init__(
        self,
        id: str,
        graph_id: str,
        current_task_id: str,
        context: Context,
        *,
        status_message: str | None = None,
        version: int = 0,
        is_completed: bool = False,
        history: list[str] | None = None,
        wake_at: datetime | None = None,
        graph_version: int | None = None,
    ) -> None:
        self.id = id
        self.graph_id = graph_id
        # The version of the graph it was last saved under (None: not yet stepped by a graph).
        self.graph_version = graph_version
        self.current_task_id = current_task_id
        self.status_message = status_message
        self.context = context
        self.version = version
        self.is_completed = is_completed
        self.history: list[str] = [] if history is None else history
        self.wake_at = wake_at
        # The recorded results of the last RECENT_REQUESTS request ids, oldest first, as the
        # codec stores them (flowcore._requests reads and writes them).
        self._requests: list[Any] = []
        # The length of the blob the codec last made of this session or read it from: what a
        # backend stored, for the tracers' events (None: not known, measure it).
        self._stored_size: int | None = None

    @classmethod
    def new_from_task(
        cls,
        session_id: str,
        task_id: str,
        *,
        graph_id: str = "default",
        context: Context | Mapping[str, Any] | None = None,
    ) -> Session:
        """A new, unsaved session (version 0) whose current task is ``task_id``.

        ``context`` is a Context, or a mapping of initial values.
        """
        for name, value in (
            ("session_id", session_id),
            ("task_id", task_id),
            ("graph_id", graph_id),
        ):
            if type(value) is not str:
                raise TypeError(
                    f"{name} must be a str, got {type(value).__name__}: {quote_id(value)}"
                )
        if context is None:
            ctx = Context()
        elif isinstance(context, Context):
            ctx = context
        elif isinstance(context, Mapping):
            ctx = Context(context)
        else:
            raise ContextError(
                f"context must be a Context or a mapping, got {type(context).__name__}"
            )
        return cls(session_id, graph_id, task_id, ctx)

    def __repr__(self) -> str:
        return (
            f"Session(id={self.id!r}, graph_id={self.graph_id!r}, "
            + ("" if self.graph_version is None else f"graph_version={self.graph_version}, ")
            + f"current_task_id={self.current_task_id!r}, version={self.version}, "
            f"is_completed={self.is_completed}"
            + ("" if self.wake_at is None else f", wake_at={self.wake_at!r}")
            + ")"
        )
