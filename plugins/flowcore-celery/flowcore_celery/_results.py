"""What a worker returns for a step: plain data, so that any result backend and any serializer
(JSON included) can carry it, and a client without flowcore's types can read it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypedDict

from flowcore import ExecutionResult, ExecutionStatus

__all__ = ["StepResult", "error_result", "skipped_result", "step_result", "to_status"]

Status = Literal["Completed", "WaitingForInput", "Paused", "Scheduled", "Error", "Skipped"]


class StepResult(TypedDict):
    """The value of the ``AsyncResult`` that :func:`flowcore_celery.submit` returns: how the last
    step of the drive (or the one step, with ``drive=False``) ended.

    - ``status``: the name of the step's ``ExecutionStatus`` (``"Completed"``,
      ``"WaitingForInput"``, ``"Paused"``, ``"Scheduled"``, ``"Error"``), or ``"Skipped"`` for a
      timer's wake that found the session woken by something else than a wake (a request);
    - ``response``: the step's response; ``next_task_id``: for ``Paused`` and ``Scheduled``;
      ``wake_at``: for ``Scheduled``, ISO 8601 in UTC;
    - ``message``: the reason of ``Paused``, the message of ``Error`` (also when the step raised:
      ``error`` is then the exception's type, e.g. ``"TaskExecutionFailed"``, and nothing of the
      step was saved), or why a wake was skipped;
    - ``current_task_id`` and ``version``: the session after the step (None when it raised);
    - ``replayed``: the step had already been applied for its request id (a redelivered or
      duplicated message), and nothing ran again;
    - ``steps``: how many steps this drive took, replayed ones included;
    - ``request_id``: the request id the drive was sent with.
    """

    session_id: str
    status: Status
    response: str | None
    next_task_id: str | None
    wake_at: str | None
    message: str | None
    error: str | None
    current_task_id: str | None
    version: int | None
    replayed: bool
    steps: int
    request_id: str


def step_result(
    session_id: str, result: ExecutionResult, *, steps: int, request_id: str
) -> StepResult:
    """The plain data of a step that ran (or was replayed)."""
    status = result.status
    next_task_id = message = wake_at = None
    if isinstance(status, ExecutionStatus.Paused):
        next_task_id, message = status.next_task_id, status.reason
    elif isinstance(status, ExecutionStatus.Scheduled):
        next_task_id, wake_at = status.next_task_id, status.wake_at.isoformat()
    elif isinstance(status, ExecutionStatus.Error):
        message = status.message
    return StepResult(
        session_id=session_id,
        status=status.name,  # type: ignore[typeddict-item]  # one of Status's names
        response=result.response,
        next_task_id=next_task_id,
        wake_at=wake_at,
        message=message,
        error=None,
        current_task_id=result.current_task_id,
        version=result.version,
        replayed=result.replayed,
        steps=steps,
        request_id=request_id,
    )


def error_result(
    session_id: str, error: BaseException, *, steps: int, request_id: str
) -> StepResult:
    """The plain data of a step that raised: nothing of it was saved."""
    return StepResult(
        session_id=session_id,
        status="Error",
        response=None,
        next_task_id=None,
        wake_at=None,
        message=str(error),
        error=type(error).__name__,
        current_task_id=None,
        version=None,
        replayed=False,
        steps=steps,
        request_id=request_id,
    )


def skipped_result(session_id: str, why: str, *, steps: int, request_id: str) -> StepResult:
    """The plain data of a wake that had nothing left to wake."""
    return StepResult(
        session_id=session_id,
        status="Skipped",
        response=None,
        next_task_id=None,
        wake_at=None,
        message=why,
        error=None,
        current_task_id=None,
        version=None,
        replayed=False,
        steps=steps,
        request_id=request_id,
    )


def to_status(data: StepResult) -> ExecutionStatus | None:
    """The ``ExecutionStatus`` that ``data`` describes (None for ``"Skipped"``)."""
    status = data["status"]
    if status == "Completed":
        return ExecutionStatus.Completed
    if status == "WaitingForInput":
        return ExecutionStatus.WaitingForInput
    if status == "Paused":
        return ExecutionStatus.Paused(data["next_task_id"] or "", data["message"] or "")
    if status == "Scheduled":
        wake_at = datetime.fromisoformat(data["wake_at"] or "")
        return ExecutionStatus.Scheduled(data["next_task_id"] or "", wake_at)
    if status == "Error":
        return ExecutionStatus.Error(data["message"] or "")
    return None
