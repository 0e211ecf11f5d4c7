"""flowcore-celery's errors.

    Exception
    ├── ConnectionError
    │   └── BrokerUnreachable        submit() or wake_due() could not reach the Celery broker
    └── flowcore.GraphError
        ├── GraphReferenceError      install()'s graph="module:attr" names no importable Graph
        ├── MessageRejected          a worker rejected a step message it can never run (the
        │                            session is unknown, the graph cannot be imported): the
        │                            failure stored as the AsyncResult's
        └── NotInstalled             submit() or wake_due() on an app install() was not called on

A storage that cannot be reached raises flowcore's own ``StorageError``, naming the URL.
"""

from __future__ import annotations

from flowcore import GraphError

__all__ = ["BrokerUnreachable", "GraphReferenceError", "MessageRejected", "NotInstalled"]


class BrokerUnreachable(ConnectionError):
    """The Celery broker could not be reached to send a message; the message names its URL."""


class GraphReferenceError(GraphError):
    """The graph reference given to ``install()`` cannot be imported, or is not a Graph."""


class MessageRejected(GraphError):
    """A worker rejected a step message it can never run; the message says which and why."""


class NotInstalled(GraphError):
    """``submit()`` or ``wake_due()`` on a Celery app that ``install()`` was not called on."""
