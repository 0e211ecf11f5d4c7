"""The Celery app of the test workers (``celery -A celery_app worker``), set up from the
environment the tests give it (broker, queue, storage, graph, where to write spans); the tests
make apps of their own with ``make_app``."""

from __future__ import annotations

import os
from datetime import timedelta

import flowcore_celery
from celery import Celery

WAKE_AHEAD = timedelta(seconds=3)
"""The test workers send a wake with ``eta`` for a session due within 3 s; later ones wait for
``wake_due``."""


def make_app(
    queue: str,
    storage: str,
    *,
    broker: str | None = None,
    graph: str = "celery_graphs:graph",
    **options: object,
) -> Celery:
    app = Celery(
        "flowcore-celery-tests",
        broker=broker or os.environ.get("FLOWCORE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1//"),
        backend="rpc://",
    )
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
    )
    flowcore_celery.install(app, graph=graph, storage=storage, wake_ahead=WAKE_AHEAD, **options)
    return app


if os.environ.get("FLOWCORE_CELERY_QUEUE"):  # a worker started by the tests
    app = make_app(
        os.environ["FLOWCORE_CELERY_QUEUE"],
        os.environ["FLOWCORE_CELERY_STORAGE"],
        graph=os.environ.get("FLOWCORE_CELERY_GRAPH", "celery_graphs:graph"),
        # Two steps a message: a three-step drive takes one message and goes on in a second.
        steps_per_message=2,
    )
    if os.environ.get("FLOWCORE_CELERY_SPANS"):
        import celery_spans

        celery_spans.export_to(os.environ["FLOWCORE_CELERY_SPANS"])
