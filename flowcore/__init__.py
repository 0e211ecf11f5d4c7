"""flowcore: run workflows one step at a time, with each run's state kept in storage.

Everything public is importable from here; the submodules are private except
:mod:`flowcore.codec` and :mod:`flowcore.testing`.
"""

import contextlib as _contextlib

from flowcore import _extensions  # first: decides compiled vs pure before the hot modules load
from flowcore._context import ChatMessage, Context, MessageRole
from flowcore._errors import (
    ContextError,
    ExecutionLimitExceeded,
    GraphError,
    GraphVersionError,
    InvalidEdge,
    PluginError,
    PluginWarning,
    SerializationError,
    SessionConflict,
    SessionMoved,
    SessionNotFound,
    StorageError,
    TaskExecutionFailed,
    TaskNotFound,
    quote_id,
)
from flowcore._fanout import FanOutTask
from flowcore._graph import Graph, GraphBuilder
from flowcore._handlers import ErrorDecision, ErrorHandler, TaskFailure
from flowcore._hooks import hookimpl, hookspec
from flowcore._json_view import session_as_json
from flowcore._logging_tracer import LoggingTracer
from flowcore._open import hide_password, open_storage
from flowcore._plugins import register_plugin, unregister_plugin
from flowcore._runner import FlowRunner
from flowcore._session import Session
from flowcore._storage import InMemorySessionStorage, SessionStorage
from flowcore._storage_options import StorageOption, resolve_storage_options
from flowcore._stream import StepEvent, emit
from flowcore._task import RetryPolicy, Task, task
from flowcore._tracing import (
    ErrorHandled,
    RunEnded,
    RunStarted,
    SessionLoaded,
    SessionSaved,
    TaskEnded,
    TaskRetrying,
    TaskStarted,
    Tracer,
)
from flowcore._values import (
    ExecutionResult,
    ExecutionStatus,
    NextAction,
    TaskRecord,
    TaskResult,
)

__version__ = "0.1.0"

COMPILED: bool = all(_extensions.compiled_modules().values())
"""True when the compiled (Cython) hot path is active, False for pure Python."""

__all__ = [
    "COMPILED",
    "ChatMessage",
    "Context",
    "ContextError",
    "ErrorDecision",
    "ErrorHandled",
    "ErrorHandler",
    "ExecutionLimitExceeded",
    "ExecutionResult",
    "ExecutionStatus",
    "FanOutTask",
    "FlowRunner",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "GraphVersionError",
    "InMemorySessionStorage",
    "InvalidEdge",
    "LoggingTracer",
    "MessageRole",
    "NextAction",
    "PluginError",
    "PluginWarning",
    "RetryPolicy",
    "RunEnded",
    "RunStarted",
    "SerializationError",
    "Session",
    "SessionConflict",
    "SessionLoaded",
    "SessionMoved",
    "SessionNotFound",
    "SessionSaved",
    "SessionStorage",
    "StepEvent",
    "StorageError",
    "StorageOption",
    "Task",
    "TaskEnded",
    "TaskExecutionFailed",
    "TaskFailure",
    "TaskNotFound",
    "TaskRecord",
    "TaskResult",
    "TaskRetrying",
    "TaskStarted",
    "Tracer",
    "__version__",
    "emit",
    "hide_password",
    "hookimpl",
    "hookspec",
    "open_storage",
    "quote_id",
    "register_plugin",
    "resolve_storage_options",
    "session_as_json",
    "task",
    "unregister_plugin",
]

# Report public names as flowcore.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        # A compiled class refuses (an extension type is immutable) and names its hot module.
        with _contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "flowcore"
del _name, _obj
