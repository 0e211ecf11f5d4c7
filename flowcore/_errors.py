"""The exceptions flowcore raises.

Every error is a :class:`GraphError`, so one ``except GraphError`` catches them all::

    GraphError
    ├── TaskExecutionFailed       a task (or an edge predicate) raised, or timed out
    ├── TaskNotFound              an id names no task of the graph
    ├── SessionNotFound           no session is stored under an id
    ├── InvalidEdge               GraphBuilder.build() found an edge to an unknown task
    ├── ExecutionLimitExceeded    one step ran more than Graph.max_steps tasks
    ├── PluginError               a plugin is broken, or two plugins claim one thing
    ├── ContextError              a bad key, or a bad use of the Context
    │   └── SerializationError    a context value cannot be stored
    └── StorageError              a backend failed, or a stored blob is unreadable
        └── SessionConflict       another writer saved the session first

A plugin that cannot be loaded never stops the others: flowcore warns with
:class:`PluginWarning` (a ``UserWarning``) and lists the problem in ``flowcore plugins``.
"""

from __future__ import annotations

import reprlib

__all__ = [
    "ContextError",
    "ExecutionLimitExceeded",
    "GraphError",
    "InvalidEdge",
    "PluginError",
    "PluginWarning",
    "SerializationError",
    "SessionConflict",
    "SessionMoved",
    "SessionNotFound",
    "StorageError",
    "TaskExecutionFailed",
    "TaskNotFound",
    "quote_id",
]

_QUOTE_LIMIT = 100
"""How many characters of an id or a value an error message quotes."""

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = _QUOTE_LIMIT


def quote_id(value: object) -> str:
    """``value`` as an error message or a log line quotes it: short, and on one line.

    A str comes back in single quotes (``'claim-1'``), its unprintable characters escaped
    (``'a\\nb'``) and, past 100 characters, cut with its length given:
    ``'aaaa…' (1,048,576 characters)``. Anything else comes back as a shortened ``repr``. For
    backend authors too: a session id is free text, and a message must not grow with it.
    """
    if type(value) is not str:
        try:
            return _REPR.repr(value)
        except Exception:  # a repr that fails must not hide the error being reported
            return f"<{type(value).__qualname__} object>"
    head = value[:_QUOTE_LIMIT]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else repr(c)[1:-1] for c in head)
    if len(value) <= _QUOTE_LIMIT:
        return f"'{head}'"
    return f"'{head}…' ({len(value):,} characters)"


class GraphError(Exception):
    """Base class of every flowcore error."""


class TaskExecutionFailed(GraphError):
    """A task raised, timed out or returned something other than a TaskResult.

    ``task_id`` names the task; the original exception is ``__cause__``.
    """

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id

    @classmethod
    def failed(cls, task_id: str, cause: object) -> TaskExecutionFailed:
        """``Task '<id>' failed: <cause>``."""
        return cls(task_id, f"Task {quote_id(task_id)} failed: {cause}")

    @classmethod
    def timed_out(cls, task_id: str, seconds: float) -> TaskExecutionFailed:
        """``Task '<id>' timed out after <seconds>s``."""
        return cls(task_id, f"Task {quote_id(task_id)} timed out after {seconds:g}s")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.task_id, str(self)))


class TaskNotFound(GraphError):
    """An id names no task of the graph. ``task_id`` is that id."""

    def __init__(self, task_id: str, message: str | None = None) -> None:
        super().__init__(message or f"Task {quote_id(task_id)} not found in the graph")
        self.task_id = task_id

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.task_id, str(self)))


class SessionNotFound(GraphError):
    """No session is stored under ``session_id``."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"Session {quote_id(session_id)} not found: create it first "
            "(FlowRunner.create_session or storage.save)"
        )
        self.session_id = session_id

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.session_id,))


class GraphVersionError(GraphError):
    """A session cannot run under this graph's version: a newer deployment stepped it
    (``session_version > graph_version``; sessions are never downgraded), or the graph lacks a
    migration from the session's version. Nothing ran and nothing was saved.

    ``session_id``, ``session_version`` and ``graph_version`` name what was compared.
    """

    def __init__(
        self, session_id: str, session_version: int, graph_version: int, message: str
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.session_version = session_version
        self.graph_version = graph_version

    def __reduce__(self) -> tuple[type, tuple[str, int, int, str]]:
        return (
            type(self),
            (self.session_id, self.session_version, self.graph_version, str(self)),
        )


class InvalidEdge(GraphError):
    """An edge names a task that is not in the graph."""


class ExecutionLimitExceeded(GraphError):
    """One step would run more tasks than ``Graph.max_steps`` allows."""


class PluginError(GraphError):
    """A plugin is broken (bad hook, failing registration) or two plugins claim one thing."""


class PluginWarning(UserWarning):
    """An installed plugin could not be loaded or registered; the other plugins still work."""


class ContextError(GraphError):
    """A context key is not a string, or the context was used wrongly."""


class SerializationError(ContextError):
    """A context value cannot be stored; the message names the key path and the type."""


class StorageError(GraphError):
    """A storage backend failed, or a stored session could not be read."""


class SessionConflict(StorageError):
    """Another writer saved the session after it was loaded (or it already exists)."""

    @classmethod
    def on_save(
        cls, session_id: str, loaded_version: int, stored_version: int | None
    ) -> SessionConflict:
        """The error a backend raises when compare-and-set on ``version`` refuses a save.

        ``loaded_version`` is the version of the session being saved (0 for a new one),
        ``stored_version`` the one in storage (None when no session is stored).
        """
        if loaded_version == 0:
            return cls(
                f"Session {quote_id(session_id)} already exists (stored version {stored_version}); "
                "load it with storage.get() to change it, or use another id"
            )
        if stored_version is None:
            return cls(
                f"Session {quote_id(session_id)} was deleted after it was loaded at version "
                f"{loaded_version}; nothing was saved"
            )
        return cls(
            f"Session '{session_id}' was saved by another writer: stored version is "
            f"{stored_version}, this copy was loaded at version {loaded_version}; nothing was "
            "saved. Load the session again and retry the step"
        )


class SessionMoved(SessionConflict):
    """The session is not where the caller expected it (``expect_task`` / ``expect_version``
    of ``FlowRunner.run``): nothing ran. ``what`` is ``"task"`` or ``"version"``;
    ``expected`` and ``found`` are the values compared."""

    def __init__(self, session_id: str, what: str, expected: object, found: object) -> None:
        self.session_id = session_id
        self.what = what
        self.expected = expected
        self.found = found
        super().__init__(
            f"Session {quote_id(session_id)} is at {what} {quote_id(found)}, not at {what} "
            f"{quote_id(expected)} as expected (expect_{what}); nothing ran. It moved since it "
            "was read: load it again to see where it is now"
        )

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (type(self), (self.session_id, self.what, self.expected, self.found))
