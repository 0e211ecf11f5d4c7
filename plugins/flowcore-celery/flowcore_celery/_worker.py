"""What a worker does with a step message: run the step on the process's loop, then decide what
the message becomes — a result, the next step of the drive, a timer, a retry, or a rejection.

Every outcome of a step is one of:

- it ran (or was replayed): Paused with ``drive`` → the next step is sent under the same Celery
  task id (so the ``AsyncResult`` of the submit gets the drive's last result) and this message is
  acknowledged; Scheduled → a wake is sent for ``wake_at`` (``eta``) when it is within
  ``wake_ahead``, else left to ``wake_due``; anything else → the result;
- ``SessionConflict``: another step of the session saved first → sent again after a backoff
  (never dropped; the request id makes the retry harmless if the step was in fact applied);
- a ``StorageError`` (the database down) → retried the same way, up to ``max_retries``;
- ``SessionNotFound`` or a graph that cannot be imported → a poison message: rejected once (not
  requeued), logged, and a failure stored as its result;
- a ``GraphVersionError`` because a newer graph version stepped the session (a rolling
  deploy) → sent again the same way, for a newer worker;
- any other ``GraphError`` (a task failed, a task not found, ...) → the drive ends with the error
  in the result; the core saved nothing of the step.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

from celery.exceptions import Ignore, Reject

from flowcore import (
    ExecutionResult,
    ExecutionStatus,
    GraphError,
    GraphVersionError,
    SessionConflict,
    SessionMoved,
    SessionNotFound,
    StorageError,
    quote_id,
)
from flowcore_celery import _trace
from flowcore_celery._errors import GraphReferenceError, MessageRejected
from flowcore_celery._messages import decode_updates, request_id_of, wake_request_id
from flowcore_celery._results import StepResult, error_result, skipped_result, step_result
from flowcore_celery._runtime import Installation

__all__ = ["run_step_message"]

logger = logging.getLogger("flowcore_celery")

BACKOFF_FIRST = 0.05
"""Seconds before the first retry of a conflict or a storage error; doubled on each retry."""
BACKOFF_MAX = 5.0
"""The longest wait between two retries, in seconds."""


REPLAY_ONLY = "\x00flowcore-celery: replay only"
"""An ``expect_task`` no session is ever at: ``run`` then answers from the request-id record, or
raises SessionMoved and runs nothing (a recorded request id is checked before the guards)."""


@dataclass(frozen=True)
class Wake:
    """A timer's wake: the time it was sent for, and the session's version then (None from a
    sender that did not know them: the session's own are taken)."""

    at: str | None
    version: int | None


@dataclass
class Stepped:
    """A step that ran or was replayed (``result``), or a wake that found nothing to wake
    (``skipped``: why), or a wake that came early (``not_due``)."""

    result: ExecutionResult | None = None
    skipped: str | None = None
    not_due: datetime | None = None
    request_id: str = ""


def run_step_message(
    task: Any,
    installation: Installation,
    *,
    session_id: str,
    updates: str | None,
    request_id: str | None,
    drive: bool,
    step: int,
    wake: bool,
    wake_at: str | None,
    wake_version: int | None = None,
) -> StepResult:
    """The body of the ``flowcore.step`` Celery task (``task`` is the bound Celery task).

    A drive takes up to ``installation.steps_per_message`` steps in this message, then sends
    the rest on in a new one: each step through the broker would cost a round trip, and a
    message that took more steps than the session's record of request ids holds (8) could,
    delivered again, find its first steps forgotten and run them twice.
    """
    base = request_id or ""
    carrier = _trace.carrier_of(task.request.headers or {})
    first = step
    while True:
        stepped = _run_or_settle(
            task,
            installation,
            session_id,
            updates if step == first else None,
            base,
            step,
            wake,
            wake_at,
            wake_version,
            carrier,
        )
        if not isinstance(stepped, Stepped):
            return stepped
        base = base or stepped.request_id
        if stepped.skipped is not None:
            return skipped_result(session_id, stepped.skipped, steps=step, request_id=base)
        if stepped.not_due is not None:
            # Early (the worker's clock behind the sender's or the storage's): the same message
            # again at its time.
            _send_again(task, eta=stepped.not_due, kwargs={"wake_at": stepped.not_due.isoformat()})
            raise Ignore()
        result = stepped.result
        assert result is not None
        status = result.status
        if drive and isinstance(status, ExecutionStatus.Paused):
            step, wake, wake_at, wake_version = step + 1, False, None, None
            if step - first < installation.steps_per_message:
                continue
            _send_again(
                task,
                kwargs={
                    "updates": None,
                    "step": step,
                    "wake": False,
                    "wake_at": None,
                    "wake_version": None,
                    "request_id": base,
                },
            )
            raise Ignore()
        if isinstance(status, ExecutionStatus.Scheduled):
            _wake_later(task, installation, session_id, result, base, step, drive)
        return step_result(session_id, result, steps=step + 1, request_id=base)


def _run_or_settle(
    task: Any,
    installation: Installation,
    session_id: str,
    updates: str | None,
    base: str,
    step: int,
    wake: bool,
    wake_at: str | None,
    wake_version: int | None,
    carrier: dict[str, str],
) -> Stepped | StepResult:
    """The step, or what its error makes of the message: a rejection, a retry, an error."""
    try:
        return installation.loop.run(
            _step(
                installation,
                session_id,
                updates,
                base,
                step,
                Wake(wake_at, wake_version) if wake else None,
                carrier,
            )
        )
    except (GraphReferenceError, SessionNotFound) as exc:
        _reject(task, installation, session_id, exc)
    except SessionConflict as exc:
        return _retry_later(task, installation, session_id, exc, base, step)
    except StorageError as exc:
        return _retry_later(task, installation, session_id, exc, base, step)
    except GraphVersionError as exc:
        if exc.session_version <= exc.graph_version:
            return _end_with(session_id, exc, base, step)
        # A rolling deploy: a newer worker stepped the session, which this one must not run
        # (nor downgrade). Sent again, it goes to a newer worker, or here once updated.
        logger.warning(
            "flowcore-celery: session %s is at graph version %d, newer than this worker's "
            "%d: sent again for a newer worker",
            quote_id(session_id),
            exc.session_version,
            exc.graph_version,
        )
        return _retry_later(task, installation, session_id, exc, base, step)
    except GraphError as exc:
        return _end_with(session_id, exc, base, step)


def _end_with(session_id: str, exc: GraphError, base: str, step: int) -> StepResult:
    """Any other ``GraphError`` (a task failed, a task not found, ...) ends the drive."""
    logger.warning(
        "flowcore-celery: the step of session %s failed, ending its drive: %s: %s",
        quote_id(session_id),
        type(exc).__name__,
        exc,
    )
    return error_result(session_id, exc, steps=step + 1, request_id=base)


def _wake_later(
    task: Any,
    installation: Installation,
    session_id: str,
    result: ExecutionResult,
    base: str,
    step: int,
    drive: bool,
) -> None:
    """A session scheduled within ``wake_ahead`` is sent again for its time (``eta``): as the
    rest of this drive (this message then ends unanswered), or, after a single step, as a
    drive of its own. Later ones are left to ``wake_due``."""
    status = result.status
    assert isinstance(status, ExecutionStatus.Scheduled)
    if status.wake_at - datetime.now(timezone.utc) > installation.wake_ahead:
        return
    wake_kwargs = {
        "updates": None,
        "step": step + 1,
        "wake": True,
        "wake_at": status.wake_at.isoformat(),
        "wake_version": result.version,
        "request_id": base,
    }
    if drive:
        _send_again(task, eta=status.wake_at, kwargs=wake_kwargs)
        raise Ignore()
    task.apply_async(
        kwargs={"session_id": session_id, "drive": True, **wake_kwargs},
        eta=status.wake_at,
        headers=_trace.headers_to_send() or None,
    )


async def _step(
    installation: Installation,
    session_id: str,
    updates: str | None,
    base: str,
    step: int,
    wake: Wake | None,
    carrier: dict[str, str],
) -> Stepped:
    runner = await installation.runner()
    with _trace.inside(carrier):
        if wake is None:
            request_id = request_id_of(base, step)
            result = await runner.run(
                session_id,
                context_updates=decode_updates(updates) if step == 0 else None,
                request_id=request_id,
            )
            return Stepped(result=result, request_id=base)
        session = await runner.storage.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        waits_for = session.wake_at.isoformat() if session.wake_at is not None else None
        if waits_for is None or (wake.at is not None and waits_for != wake.at):
            if wake.at is not None and wake.version is not None:
                # Another waker of this timer (wake_due, a duplicate) may have woken it: its
                # step is recorded under the timer's request id, and answers this drive too.
                try:
                    replayed = await runner.run(
                        session_id,
                        request_id=wake_request_id(wake.version, wake.at),
                        expect_task=REPLAY_ONLY,
                    )
                except SessionMoved:
                    pass
                else:
                    return Stepped(result=replayed, request_id=base)
            return Stepped(
                skipped=f"session {quote_id(session_id)} no longer waits for "
                f"{wake.at or 'a time'}: woken by another message, or moved on"
            )
        request_id = wake_request_id(session.version, waits_for)
        try:
            result = await runner.run(
                session_id, request_id=request_id, expect_version=session.version
            )
        except SessionMoved:
            return Stepped(skipped=f"session {quote_id(session_id)} moved on while waking")
        if not result.replayed and result.version == session.version:
            return Stepped(not_due=session.wake_at, request_id=base or request_id)
        return Stepped(result=result, request_id=base or request_id)


def _send_again(task: Any, *, kwargs: dict[str, Any], eta: datetime | None = None) -> None:
    """Send this message again, changed by ``kwargs``, under the same Celery task id (the
    submitter's AsyncResult gets the last result) with the same reply-to and trace headers."""
    signature = task.signature_from_request(kwargs={**task.request.kwargs, **kwargs}, retries=0)
    signature.apply_async(eta=eta)


def _retry_later(
    task: Any,
    installation: Installation,
    session_id: str,
    exc: GraphError,
    base: str,
    step: int,
) -> StepResult:
    retries: int = task.request.retries
    if retries >= installation.max_retries:
        logger.error(
            "flowcore-celery: the step of session %s still fails after %d retries, ending its "
            "drive: %s: %s",
            quote_id(session_id),
            retries,
            type(exc).__name__,
            exc,
        )
        return error_result(session_id, exc, steps=step + 1, request_id=base)
    delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**retries) * random.uniform(0.5, 1.5)
    logger.info(
        "flowcore-celery: session %s: %s; step sent again in %.2f s (retry %d)",
        quote_id(session_id),
        type(exc).__name__,
        delay,
        retries + 1,
    )
    raise task.retry(countdown=delay, max_retries=None, exc=exc)


def _reject(task: Any, installation: Installation, session_id: str, exc: Exception) -> NoReturn:
    """A poison message: logged, its failure stored as the result, rejected without requeue."""
    logger.error(
        "flowcore-celery: rejected the step message for session %s (task %s, graph %s, "
        "storage %s), not to be retried: %s: %s",
        quote_id(session_id),
        task.request.id,
        installation.graph_ref,
        installation.where,
        type(exc).__name__,
        exc,
    )
    rejected = MessageRejected(
        f"The step message for session {quote_id(session_id)} was rejected by the worker, "
        f"not to be retried: {type(exc).__name__}: {exc}"
    )
    task.backend.mark_as_failure(task.request.id, rejected, request=task.request)
    raise Reject(rejected, requeue=False)
