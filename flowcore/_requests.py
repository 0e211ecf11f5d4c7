"""The record of a session's recent request ids: what ``run(request_id=...)`` answers a replay with.

A step run with a ``request_id`` appends one entry to ``session._requests`` before the session
is saved, so the entry is stored by the same compare-and-set as the step. An entry is
``[request_id, result]``, ``result`` being the result as the step returned it, packed once
with msgpack (plain values only) when it is recorded, so that the steps after it load and save
it as one bytes value rather than build and pack its parts every time::

    [version, current_task_id, response, status, tasks]

``status`` is ``[kind, first, second]`` as in ExecutionStatus (a Scheduled ``wake_at`` as
integer microseconds since 1970 UTC); each of ``tasks`` is ``[task_id, response,
status_message, action]``, with ``action`` None, an int kind, ``[5, task_id]`` for GoTo, or
``[6, microseconds]`` / ``[6, [days, seconds, microseconds]]`` for WaitUntil with a datetime /
a timedelta. Only the last :data:`flowcore._session.RECENT_REQUESTS` entries are kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgpack

from flowcore._errors import SerializationError, StorageError, quote_id
from flowcore._session import RECENT_REQUESTS, Session
from flowcore._values import (
    ERROR,
    GO_TO,
    PAUSED,
    SCHEDULED,
    WAIT_UNTIL,
    Error,
    ExecutionResult,
    ExecutionStatus,
    GoTo,
    NextAction,
    Paused,
    TaskRecord,
    WaitUntil,
    from_utc_micros,
    scheduled,
    step_result,
    utc_micros,
)

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "check_request_id",
    "check_requests",
    "find_request",
    "record_request",
]

MAX_REQUEST_ID_LENGTH = 256
"""The longest request id accepted, in characters (a UUID is 36)."""

_SINGLETON_ACTIONS = (
    NextAction.Continue,
    NextAction.ContinueAndExecute,
    NextAction.WaitForInput,
    NextAction.End,
    NextAction.GoBack,
)
_SINGLETON_STATUSES = (ExecutionStatus.Completed, ExecutionStatus.WaitingForInput)


_LOCAL = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's packer for records (msgpack.packb would make one, with a large buffer,
    on every call; a Packer is not safe to share between threads)."""
    packer: msgpack.Packer | None = getattr(_LOCAL, "packer", None)
    if packer is None:
        make: Callable[..., msgpack.Packer] = msgpack.Packer  # buf_size is not in its stubs
        packer = _LOCAL.packer = make(buf_size=1024)
    return packer


class _BadRecord(ValueError):
    """A stored request record that is not what this module writes."""


def check_request_id(request_id: object) -> str:
    """``request_id`` if it is a usable request id; else TypeError or ValueError naming it."""
    if type(request_id) is not str:
        raise TypeError(
            f"request_id must be a str, got {type(request_id).__name__}: {quote_id(request_id)}"
        )
    if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise ValueError(
            f"request_id must be 1 to {MAX_REQUEST_ID_LENGTH} characters long, got "
            f"{len(request_id)}: {quote_id(request_id[:80])}; use e.g. a UUID per request"
        )
    return request_id


def find_request(session: Session, request_id: str) -> ExecutionResult | None:
    """The recorded result of ``request_id`` on ``session`` (``replayed`` True), or None.

    Raises StorageError naming the session when the recorded entry cannot be read.
    """
    for entry in session._requests:
        if (
            type(entry) is not list
            or len(entry) != 2
            or type(entry[0]) is not str
            or type(entry[1]) is not bytes
        ):
            raise StorageError(
                f"Session {quote_id(session.id)} could not be decoded: its record of request "
                f"ids holds an entry that is not [request id, result]: {quote_id(entry)}"
            )
        if entry[0] == request_id:
            try:
                return _replay(session.id, entry)
            except Exception as exc:  # anything msgpack or the checks raise
                if isinstance(exc, MemoryError):
                    raise
                raise StorageError(
                    f"Session {quote_id(session.id)} could not be decoded: its record of request "
                    f"{quote_id(request_id)} is malformed ({exc})"
                ) from exc
    return None


def _text(value: object, what: str, task_id: str | None, request_id: str) -> str | None:
    if value is None or type(value) is str:
        return value
    whose = "the step" if task_id is None else f"task {quote_id(task_id)}"
    raise SerializationError(
        f"the {what} of {whose} is {type(value).__name__}: {quote_id(value)}; a step run with "
        f"request_id {quote_id(request_id)} records it, so it must be a str or None"
    )


def _action(action: NextAction | None) -> Any:
    if action is None:
        return None
    kind = action._kind
    if kind == GO_TO:
        return [kind, action._task_id]
    if kind == WAIT_UNTIL:
        when = action._task_id
        if isinstance(when, timedelta):
            return [kind, [when.days, when.seconds, when.microseconds]]
        return [kind, utc_micros(when)]
    return kind


def record_request(
    session: Session, request_id: str, result: ExecutionResult, version: int
) -> None:
    """Append the result of the step that ``request_id`` made to the session's record, keeping
    the newest :data:`RECENT_REQUESTS`. Raises SerializationError for a response or status
    message that is no str."""
    status = result._status
    second = status._second
    if status._kind == SCHEDULED:
        second = utc_micros(second)
    tasks = [
        [
            record._task_id,
            _text(record._response, "response", record._task_id, request_id),
            _text(record._status_message, "status message", record._task_id, request_id),
            _action(record._next_action),
        ]
        for record in result._tasks
    ]
    try:
        packed = _packer().pack(
            [
                version,
                session.current_task_id,
                _text(result._response, "response", None, request_id),
                [status._kind, status._first, second],
                tasks,
            ]
        )
    except UnicodeEncodeError as exc:  # a lone surrogate in a response or status message
        raise SerializationError(
            f"the result of the step run with request_id {quote_id(request_id)} holds text "
            f"that is not valid Unicode ({exc.reason}); it cannot be recorded"
        ) from exc
    entry = [request_id, packed]
    requests = session._requests
    requests.append(entry)
    if len(requests) > RECENT_REQUESTS:
        del requests[: len(requests) - RECENT_REQUESTS]


def _optional_str(value: object) -> str | None:
    if value is not None and type(value) is not str:
        raise _BadRecord("a text field is not a str")
    return value


def _read_action(value: object) -> NextAction | None:
    if value is None:
        return None
    if type(value) is int:
        if not 0 <= value < len(_SINGLETON_ACTIONS):
            raise _BadRecord(f"unknown action kind {value}")
        return _SINGLETON_ACTIONS[value]
    if type(value) is not list or len(value) != 2:
        raise _BadRecord("an action is not an int or a pair")
    kind, arg = value
    if kind == GO_TO and type(arg) is str:
        return GoTo(arg)
    if kind == WAIT_UNTIL:
        if type(arg) is int:
            return WaitUntil(from_utc_micros(arg))
        if type(arg) is list and len(arg) == 3 and all(type(part) is int for part in arg):
            return WaitUntil(timedelta(arg[0], arg[1], arg[2]))
    raise _BadRecord("an action has an unknown kind or argument")


def _read_status(value: object) -> ExecutionStatus:
    if type(value) is not list or len(value) != 3:
        raise _BadRecord("a status is not a triple")
    kind, first, second = value
    if type(kind) is not int:
        raise _BadRecord("a status kind is not an int")
    if kind < len(_SINGLETON_STATUSES):
        return _SINGLETON_STATUSES[kind]
    if kind == PAUSED and type(first) is str and type(second) is str:
        return Paused(first, second)
    if kind == ERROR and type(first) is str:
        return Error(first)
    if kind == SCHEDULED and type(first) is str and type(second) is int:
        return scheduled(first, from_utc_micros(second))
    raise _BadRecord(f"a status of kind {kind} has wrong fields")


def _read_task(value: object) -> TaskRecord:
    if type(value) is not list or len(value) != 4 or type(value[0]) is not str:
        raise _BadRecord("a task record is not [task_id, response, status_message, action]")
    return TaskRecord(
        value[0], _optional_str(value[1]), _optional_str(value[2]), _read_action(value[3])
    )


def _replay(session_id: str, entry: list[Any]) -> ExecutionResult:
    fields = msgpack.unpackb(entry[1])
    if type(fields) is not list or len(fields) != 5:
        raise _BadRecord("the recorded result is not an array of 5 fields")
    version, current_task_id, response, status, tasks = fields
    if type(version) is not int or type(current_task_id) is not str or type(tasks) is not list:
        raise _BadRecord("the recorded version, task or tasks have the wrong types")
    return step_result(
        _optional_str(response),
        _read_status(status),
        session_id,
        version,
        current_task_id,
        tuple(_read_task(task) for task in tasks),
        True,
    )


def check_requests(value: object) -> list[Any]:
    """``value`` if it can be a record as :func:`record_request` writes it; else ValueError.

    The codec calls it on every load of a session that has a record, so it only checks that
    the record is a short array: its entries are checked when a request id is looked up
    (:func:`find_request`), by the steps that carry one, and a fault is a StorageError then.
    """
    if type(value) is not list or len(value) > RECENT_REQUESTS * 4:
        raise _BadRecord("the request record is not a short array")
    return value
