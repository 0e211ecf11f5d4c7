"""``install``, ``submit``, ``wake_due``: flowcore's tasks on the application's own Celery app."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from celery import signals

from flowcore import GraphError, StorageError, hide_password, quote_id
from flowcore_celery import _trace
from flowcore_celery._errors import BrokerUnreachable, NotInstalled
from flowcore_celery._messages import STEP_TASK, WAKE_DUE_TASK, encode_updates, wake_request_id
from flowcore_celery._results import StepResult
from flowcore_celery._runtime import Installation
from flowcore_celery._worker import run_step_message

__all__ = ["beat_entry", "install", "installation_of", "submit", "wake_due"]

logger = logging.getLogger("flowcore_celery")

_ATTR = "flowcore_celery"  # where install() keeps its Installation on the Celery app
_INSTALLED: list[Installation] = []  # every installation of this process, for the signals


def install(
    app: Any,
    graph: str,
    storage: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    wake_ahead: timedelta = timedelta(minutes=15),
    max_retries: int = 100,
    steps_per_message: int = 4,
) -> None:
    """Register flowcore's step task (``flowcore.step``) and ``flowcore.wake_due`` on ``app``.

    ``graph`` is ``"module:attr"``: a Graph, or a function without arguments returning one,
    imported by each worker process (not here, so that the app module and the graph's may import
    each other). ``storage`` is a URL for ``flowcore.open_storage`` (``storage_options`` its
    keyword options), opened once per worker process and closed when it stops. ``wake_ahead``:
    a session scheduled at most this far ahead is sent again with Celery's ``eta``; later ones
    are woken by :func:`wake_due` (keep it below the broker's consumer timeout: RabbitMQ's is 30
    minutes). ``max_retries``: how often a step that met a conflict or a storage error is sent
    again, with a backoff growing from 0.05 s to 5 s, before its drive ends with the error.
    ``steps_per_message`` (1 to 7): how many steps of a drive one message takes before the rest
    goes on in a new message (fewer broker round trips; fairer to other sessions when small;
    below the 8 request ids a session records, so a message delivered again replays its steps).
    """
    if getattr(app, _ATTR, None) is not None:
        raise GraphError(
            f"flowcore_celery.install() was already called on the Celery app {app.main!r}: "
            "call it once per app"
        )
    if not isinstance(wake_ahead, timedelta) or wake_ahead < timedelta(0):
        raise ValueError(f"wake_ahead must be a timedelta of zero or more, got {wake_ahead!r}")
    if type(max_retries) is not int or max_retries < 0:
        raise ValueError(f"max_retries must be an int of 0 or more, got {max_retries!r}")
    if type(steps_per_message) is not int or not 1 <= steps_per_message <= 7:
        raise ValueError(
            f"steps_per_message must be an int from 1 to 7, got {steps_per_message!r}: a "
            "message delivered again must find each of its steps among the 8 request ids "
            "a session records"
        )
    if type(graph) is not str or type(storage) is not str:
        raise TypeError(
            "install(app, graph='module:attr', storage='URL') takes both as str, got "
            f"graph={type(graph).__name__}, storage={type(storage).__name__}"
        )
    installation = Installation(
        graph_ref=graph,
        storage_url=storage,
        storage_options=dict(storage_options or {}),
        wake_ahead=wake_ahead,
        max_retries=max_retries,
        steps_per_message=steps_per_message,
    )
    setattr(app, _ATTR, installation)
    _INSTALLED.append(installation)

    def step(
        task: Any,
        session_id: str,
        updates: str | None = None,
        request_id: str | None = None,
        drive: bool = True,
        step: int = 0,
        wake: bool = False,
        wake_at: str | None = None,
        wake_version: int | None = None,
    ) -> StepResult:
        return run_step_message(
            task,
            installation,
            session_id=session_id,
            updates=updates,
            request_id=request_id,
            drive=drive,
            step=step,
            wake=wake,
            wake_at=wake_at,
            wake_version=wake_version,
        )

    def wake_due_task(limit: int = 1000) -> int:
        return len(wake_due(app, limit=limit))

    # acks_late: a message is acknowledged after its step, so a worker lost mid-step (kill -9,
    # a pool process killed) has it delivered again; the step's request id answers it if the
    # step was saved. reject_on_worker_lost: requeue, rather than fail, a lost pool process's.
    app.task(name=STEP_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True)(
        step
    )
    app.task(name=WAKE_DUE_TASK, shared=False, acks_late=True)(wake_due_task)


def installation_of(app: Any) -> Installation:
    installation = getattr(app, _ATTR, None)
    if not isinstance(installation, Installation):
        raise NotInstalled(
            f"flowcore_celery.install(app, graph=..., storage=...) was not called on the Celery "
            f"app {getattr(app, 'main', app)!r}: call it in the module that creates the app"
        )
    return installation


def submit(
    app: Any,
    session_id: str,
    *,
    context_updates: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    drive: bool = True,
    check: bool = True,
) -> Any:
    """Send a step of session ``session_id`` to the workers; return Celery's ``AsyncResult``,
    whose value is a :class:`StepResult` (plain data).

    ``context_updates`` are set into the context by the step (the first of the drive); a value a
    context cannot hold raises ``SerializationError`` here. ``request_id`` makes the step
    exactly-once (a UUID is made when it is None): a duplicate of the message, or a second
    submit with the same id, applies nothing twice. With ``drive`` the worker keeps stepping
    while the session is Paused and stops at WaitingForInput, Completed or Error (a session
    scheduled within ``wake_ahead`` is stepped on at its time). ``check`` first reads the session
    from the storage: SessionNotFound for an unknown id, StorageError naming the URL when the
    storage cannot be reached. An unreachable broker raises BrokerUnreachable naming its URL.
    """
    installation = installation_of(app)
    if type(session_id) is not str:
        raise TypeError(f"session_id must be a str, got {type(session_id).__name__}")
    if request_id is not None and type(request_id) is not str:
        raise TypeError(f"request_id must be a str or None, got {type(request_id).__name__}")
    updates = encode_updates(context_updates)
    if check:
        installation.loop.run(installation.check(session_id))
    kwargs = {
        "session_id": session_id,
        "updates": updates,
        "request_id": request_id or uuid.uuid4().hex,
        "drive": drive,
    }
    return _send(app, kwargs, f"the step of session {quote_id(session_id)}")


def wake_due(app: Any, *, limit: int = 1000) -> list[str]:
    """Send a wake for each session the storage reports due (by its own clock), at most
    ``limit`` of them; return their ids. Call it every few seconds or minutes (the
    ``flowcore.wake_due`` task does, from a beat schedule: :func:`beat_entry`)."""
    installation = installation_of(app)
    try:
        due = installation.loop.run(_due(installation, limit))
    except NotImplementedError as exc:
        raise StorageError(
            f"The storage {installation.where} cannot list due sessions, so wake_due() cannot "
            "find the sessions to wake: use a backend that can (SQL, Redis, memory)"
        ) from exc
    for session_id, wake_at, version in due:
        # The timer's own request id: every wake of it, from here or from its eta message,
        # and every redelivery of one, takes the woken step once and drives on with the same ids.
        kwargs = {
            "session_id": session_id,
            "request_id": wake_request_id(version, wake_at),
            "drive": True,
            "wake": True,
            "wake_at": wake_at,
            "wake_version": version,
        }
        _send(app, kwargs, f"the wake of session {quote_id(session_id)}")
    if due:
        logger.info("flowcore-celery: sent the wake of %d due session(s)", len(due))
    return [session_id for session_id, _, _ in due]


def beat_entry(every: float | timedelta = 30.0, *, limit: int = 1000) -> dict[str, Any]:
    """A Celery beat schedule entry that runs :func:`wake_due` every ``every`` seconds:
    ``app.conf.beat_schedule = {"flowcore-wake-due": flowcore_celery.beat_entry(30)}``."""
    return {"task": WAKE_DUE_TASK, "schedule": every, "kwargs": {"limit": limit}}


async def _due(installation: Installation, limit: int) -> list[tuple[str, str, int]]:
    """The due sessions' ids, with the time each waits for and its version."""
    storage = await installation.storage()
    due = []
    for session_id in await storage.due_sessions(limit=limit):
        session = await storage.get(session_id)
        if session is not None and session.wake_at is not None:  # not woken meanwhile
            due.append((session_id, session.wake_at.isoformat(), session.version))
    return due


def _send(app: Any, kwargs: dict[str, Any], what: str) -> Any:
    from kombu.exceptions import OperationalError

    try:
        return app.tasks[STEP_TASK].apply_async(
            kwargs=kwargs, headers=_trace.headers_to_send() or None
        )
    except (OperationalError, OSError) as exc:
        broker = hide_password(str(app.connection_for_write().as_uri(include_password=True)))
        raise BrokerUnreachable(
            f"flowcore-celery could not send {what}: the Celery broker {broker} is "
            f"unreachable ({exc}). Start it (RabbitMQ: rabbitmq-server), or fix the app's "
            "broker_url"
        ) from exc


def _open_in_pool_process(**_: Any) -> None:
    """A prefork pool process: import the graph and open the storage now, so that a problem is
    logged when the worker starts rather than on its first message."""
    for installation in _INSTALLED:
        try:
            installation.loop.run(installation.runner())
        except (GraphError, StorageError) as exc:
            logger.error(
                "flowcore-celery: this worker process cannot run steps yet (each of its "
                "messages will say why): %s: %s",
                type(exc).__name__,
                exc,
            )


def _close_on_shutdown(**_: Any) -> None:
    """Close what this process opened (the storage), then stop its loop."""
    for installation in _INSTALLED:
        if not installation.loop.is_running():
            continue
        try:
            installation.loop.run(installation.close())
        except Exception as exc:  # shutting down: say it, and stop the loop all the same
            logger.warning(
                "flowcore-celery: closing the storage %s failed: %s: %s",
                installation.where,
                type(exc).__name__,
                exc,
            )
        installation.loop.stop()


signals.worker_process_init.connect(_open_in_pool_process)
signals.worker_process_shutdown.connect(_close_on_shutdown)
signals.worker_shutdown.connect(_close_on_shutdown)
