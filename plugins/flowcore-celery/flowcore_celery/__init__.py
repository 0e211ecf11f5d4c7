"""flowcore-celery: flowcore's steps run by Celery workers, beyond one process and one machine.

On the application's own Celery app::

    app = Celery("claims", broker="amqp://guest:guest@localhost:5672//", backend="rpc://")
    flowcore_celery.install(app, graph="claims.workflow:graph", storage="postgresql://...")

workers are started the Celery way (``celery -A claims.tasks worker``); each worker process
imports the graph, opens the storage once and runs every step on one event loop it keeps.
``submit(app, session_id)`` sends a step (exactly once, by request id) and returns the
``AsyncResult``; with ``drive=True`` the workers keep stepping the session until it waits for
input, completes or fails. Timers: a session scheduled soon is sent again with ``eta``;
``wake_due`` (from a beat entry) sends whatever the storage reports due.

No hook of flowcore's is implemented: the plugin has no entry point, and is used from the app.
"""

from __future__ import annotations

from flowcore_celery._errors import (
    BrokerUnreachable,
    GraphReferenceError,
    MessageRejected,
    NotInstalled,
)
from flowcore_celery._install import beat_entry, install, submit, wake_due
from flowcore_celery._messages import STEP_TASK, WAKE_DUE_TASK
from flowcore_celery._results import StepResult, to_status
from flowcore_celery._runtime import import_graph

__version__ = "0.1.0"

__all__ = [
    "STEP_TASK",
    "WAKE_DUE_TASK",
    "BrokerUnreachable",
    "GraphReferenceError",
    "MessageRejected",
    "NotInstalled",
    "StepResult",
    "__version__",
    "beat_entry",
    "import_graph",
    "install",
    "submit",
    "to_status",
    "wake_due",
]
