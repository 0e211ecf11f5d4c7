"""Value types of one step: NextAction, ExecutionStatus, ExecutionResult, TaskResult.

A hot-path module: plain typed Python, compiled by Cython where ``_values.pxd`` declares the
C layout. The singletons (``NextAction.End``...) and the subclasses (``NextAction.GoTo``...) hang
off their class through :class:`_ClassConstant`, because a compiled class cannot be given new
attributes once it exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["ExecutionResult", "ExecutionStatus", "NextAction", "TaskRecord", "TaskResult"]

_T = TypeVar("_T")

# NextAction kinds, in the order of DESIGN.md's step table.
CONTINUE = 0
CONTINUE_AND_EXECUTE = 1
WAIT_FOR_INPUT = 2
END = 3
GO_BACK = 4
GO_TO = 5
WAIT_UNTIL = 6
_ACTION_NAMES = (
    "Continue",
    "ContinueAndExecute",
    "WaitForInput",
    "End",
    "GoBack",
    "GoTo",
    "WaitUntil",
)

# ExecutionStatus kinds.
COMPLETED = 0
WAITING_FOR_INPUT = 1
PAUSED = 2
ERROR = 3
SCHEDULED = 4
_STATUS_NAMES = ("Completed", "WaitingForInput", "Paused", "Error", "Scheduled")

_UTC = timezone.utc


class _ClassConstant(Generic[_T]):
    """A read-only class attribute whose value is filled in after the class is created."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None

    def __get__(self, instance: object, owner: type | None = None) -> _T:
        return self.value  # type: ignore[no-any-return]


def _require_str(value: object, what: str) -> str:
    if type(value) is not str:
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    return value


def _require_aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be an aware datetime, got {type(value).__name__}: {value!r}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{what} must be an aware datetime, got the naive {value!r}: give it a tzinfo, "
            "e.g. datetime.now(timezone.utc) + timedelta(hours=1)"
        )
    return value


class NextAction:
    """What the engine does after a task: ``NextAction.Continue``, ``NextAction.GoTo("id")``...

    Values are immutable and compare by value; use them in ``match`` statements.
    """

    __slots__ = ("_kind", "_task_id")

    Continue: ClassVar[_ClassConstant[NextAction]] = _ClassConstant()
    ContinueAndExecute: ClassVar[_ClassConstant[NextAction]] = _ClassConstant()
    WaitForInput: ClassVar[_ClassConstant[NextAction]] = _ClassConstant()
    End: ClassVar[_ClassConstant[NextAction]] = _ClassConstant()
    GoBack: ClassVar[_ClassConstant[NextAction]] = _ClassConstant()
    GoTo: ClassVar[_ClassConstant[type[GoTo]]] = _ClassConstant()
    WaitUntil: ClassVar[_ClassConstant[type[WaitUntil]]] = _ClassConstant()

    def __init__(self, _kind: int, _task_id: Any = None) -> None:
        # Private: use the singletons and NextAction.GoTo(task_id).
        self._kind = _kind
        self._task_id = _task_id

    @property
    def name(self) -> str:
        """The action's name: ``"Continue"``, ``"End"``, ``"GoTo"``..."""
        return _ACTION_NAMES[self._kind]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NextAction):
            return NotImplemented
        return self._kind == other._kind and self._task_id == other._task_id

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, NextAction):
            return NotImplemented
        return self._kind != other._kind or self._task_id != other._task_id

    def __hash__(self) -> int:
        return hash((self._kind, self._task_id))

    def __repr__(self) -> str:
        if self._kind >= GO_TO:
            return f"NextAction.{_ACTION_NAMES[self._kind]}({self._task_id!r})"
        return f"NextAction.{_ACTION_NAMES[self._kind]}"

    def __str__(self) -> str:
        if self._kind >= GO_TO:
            return f"{_ACTION_NAMES[self._kind]}({self._task_id})"
        return _ACTION_NAMES[self._kind]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self._kind == GO_TO:
            return (GoTo, (self._task_id,))
        if self._kind == WAIT_UNTIL:
            return (WaitUntil, (self._task_id,))
        return (_action_singleton, (self._kind,))


class GoTo(NextAction):
    """``NextAction.GoTo(task_id)``: jump to the task with that id."""

    __slots__ = ()
    __match_args__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        super().__init__(GO_TO, _require_str(task_id, "NextAction.GoTo task_id"))

    @property
    def task_id(self) -> str:
        """The id of the task to jump to."""
        return self._task_id  # type: ignore[no-any-return]


class WaitUntil(NextAction):
    """``NextAction.WaitUntil(when)``: move along the task's edge, then wait until ``when``.

    ``when`` is an aware datetime, or a timedelta (>= 0) counted from the moment the engine
    applies the action. The step returns ``ExecutionStatus.Scheduled(next_task_id, wake_at)``
    and no run before ``wake_at`` runs anything.
    """

    __slots__ = ()
    __match_args__ = ("when",)

    def __init__(self, when: datetime | timedelta) -> None:
        if isinstance(when, timedelta):
            if when < timedelta(0):
                raise ValueError(
                    f"NextAction.WaitUntil needs a timedelta >= 0, got {when!r}: a time to wait "
                    "cannot be negative"
                )
        else:
            _require_aware(when, "NextAction.WaitUntil when (or a timedelta)")
        super().__init__(WAIT_UNTIL, when)

    @property
    def when(self) -> datetime | timedelta:
        """The aware datetime to wait until, or the timedelta to wait from when it is applied."""
        return self._task_id  # type: ignore[no-any-return]


_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_US = timedelta(microseconds=1)


def utc_micros(moment: datetime) -> int:
    """An aware datetime as integer microseconds since 1970-01-01 UTC (how blobs store times)."""
    return (moment - _EPOCH) // _US


def from_utc_micros(micros: int) -> datetime:
    """The aware UTC datetime of :func:`utc_micros`; OverflowError outside the years 1 to 9999."""
    return _EPOCH + timedelta(microseconds=micros)


def wake_time(action: NextAction) -> datetime:
    """The UTC moment a WaitUntil ``action`` applied now waits until."""
    when = action._task_id
    if isinstance(when, timedelta):
        return datetime.now(_UTC) + when
    return when.astimezone(_UTC)  # type: ignore[no-any-return]


_ACTIONS = tuple(NextAction(kind) for kind in range(GO_TO))


def _action_singleton(kind: int) -> NextAction:
    return _ACTIONS[kind]


NextAction.__dict__["Continue"].value = _ACTIONS[CONTINUE]
NextAction.__dict__["ContinueAndExecute"].value = _ACTIONS[CONTINUE_AND_EXECUTE]
NextAction.__dict__["WaitForInput"].value = _ACTIONS[WAIT_FOR_INPUT]
NextAction.__dict__["End"].value = _ACTIONS[END]
NextAction.__dict__["GoBack"].value = _ACTIONS[GO_BACK]
NextAction.__dict__["GoTo"].value = GoTo
NextAction.__dict__["WaitUntil"].value = WaitUntil


class ExecutionStatus:
    """How a step ended: ``Completed``, ``WaitingForInput``, ``Paused(...)`` or ``Error(...)``.

    Values are immutable and compare by value; use them in ``match`` statements.
    """

    __slots__ = ("_first", "_kind", "_second")

    Completed: ClassVar[_ClassConstant[ExecutionStatus]] = _ClassConstant()
    WaitingForInput: ClassVar[_ClassConstant[ExecutionStatus]] = _ClassConstant()
    Paused: ClassVar[_ClassConstant[type[Paused]]] = _ClassConstant()
    Error: ClassVar[_ClassConstant[type[Error]]] = _ClassConstant()
    Scheduled: ClassVar[_ClassConstant[type[Scheduled]]] = _ClassConstant()

    def __init__(self, _kind: int, _first: str | None = None, _second: Any = None) -> None:
        # Private: use the singletons, ExecutionStatus.Paused(...) and ExecutionStatus.Error(...).
        self._kind = _kind
        self._first = _first
        self._second = _second

    @property
    def name(self) -> str:
        """``"Completed"``, ``"WaitingForInput"``, ``"Paused"``, ``"Error"`` or ``"Scheduled"``."""
        return _STATUS_NAMES[self._kind]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionStatus):
            return NotImplemented
        return (
            self._kind == other._kind
            and self._first == other._first
            and self._second == other._second
        )

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((self._kind, self._first, self._second))

    def __repr__(self) -> str:
        if self._kind == PAUSED:
            return f"ExecutionStatus.Paused(next_task_id={self._first!r}, reason={self._second!r})"
        if self._kind == ERROR:
            return f"ExecutionStatus.Error(message={self._first!r})"
        if self._kind == SCHEDULED:
            return (
                f"ExecutionStatus.Scheduled(next_task_id={self._first!r}, wake_at={self._second!r})"
            )
        return f"ExecutionStatus.{_STATUS_NAMES[self._kind]}"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self._kind == PAUSED:
            return (Paused, (self._first, self._second))
        if self._kind == ERROR:
            return (Error, (self._first,))
        if self._kind == SCHEDULED:
            return (Scheduled, (self._first, self._second))
        return (_status_singleton, (self._kind,))


class _NextTaskStatus(ExecutionStatus):
    """A status that names the task the next run starts with: Paused, Scheduled."""

    __slots__ = ()

    @property
    def next_task_id(self) -> str:
        """The task the next run starts with (once due, for a Scheduled session)."""
        return self._first  # type: ignore[return-value]


class Paused(_NextTaskStatus):
    """``ExecutionStatus.Paused(next_task_id, reason)``: ``next_task_id`` runs on the next run."""

    __slots__ = ()
    __match_args__ = ("next_task_id", "reason")

    def __init__(self, next_task_id: str, reason: str) -> None:
        super().__init__(
            PAUSED,
            _require_str(next_task_id, "Paused next_task_id"),
            _require_str(reason, "Paused reason"),
        )

    @property
    def reason(self) -> str:
        """Why the step paused, e.g. ``"Task completed, continuing to next task"``."""
        return self._second  # type: ignore[no-any-return]


def paused(next_task_id: str, reason: str) -> Paused:
    """``Paused(next_task_id, reason)`` from values the engine already knows to be str."""
    status = Paused.__new__(Paused)
    status._kind = PAUSED
    status._first = next_task_id
    status._second = reason
    return status


class Error(ExecutionStatus):
    """``ExecutionStatus.Error(message)``: an error handler reported a failure."""

    __slots__ = ()
    __match_args__ = ("message",)

    def __init__(self, message: str) -> None:
        super().__init__(ERROR, _require_str(message, "Error message"))

    @property
    def message(self) -> str:
        """What went wrong."""
        return self._first  # type: ignore[return-value]


class Scheduled(_NextTaskStatus):
    """``ExecutionStatus.Scheduled(next_task_id, wake_at)``: the session waits for a time;
    ``next_task_id`` runs on the first run at or after ``wake_at`` (an aware datetime)."""

    __slots__ = ()
    __match_args__ = ("next_task_id", "wake_at")

    def __init__(self, next_task_id: str, wake_at: datetime) -> None:
        super().__init__(
            SCHEDULED,
            _require_str(next_task_id, "Scheduled next_task_id"),
            _require_aware(wake_at, "Scheduled wake_at"),
        )

    @property
    def wake_at(self) -> datetime:
        """When the session is due (an aware datetime, in UTC as the engine sets it)."""
        return self._second  # type: ignore[no-any-return]


def scheduled(next_task_id: str, wake_at: datetime) -> Scheduled:
    """``Scheduled(next_task_id, wake_at)`` from values the engine already checked."""
    status = Scheduled.__new__(Scheduled)
    status._kind = SCHEDULED
    status._first = next_task_id
    status._second = wake_at
    return status


_STATUSES = (ExecutionStatus(COMPLETED), ExecutionStatus(WAITING_FOR_INPUT))


def _status_singleton(kind: int) -> ExecutionStatus:
    return _STATUSES[kind]


ExecutionStatus.__dict__["Completed"].value = _STATUSES[COMPLETED]
ExecutionStatus.__dict__["WaitingForInput"].value = _STATUSES[WAITING_FOR_INPUT]
ExecutionStatus.__dict__["Paused"].value = Paused
ExecutionStatus.__dict__["Error"].value = Error
ExecutionStatus.__dict__["Scheduled"].value = Scheduled


class TaskRecord:
    """What one task of a step did: ``TaskRecord(task_id, response, status_message, next_action)``.

    ``ExecutionResult.tasks`` holds one per task that ran, in order. Frozen; compares by value.
    ``next_action`` is None for a task whose failure an error handler reported.
    """

    __slots__ = ("_next_action", "_response", "_status_message", "_task_id")
    __match_args__ = ("task_id", "response", "status_message", "next_action")

    def __init__(
        self,
        task_id: str,
        response: str | None = None,
        status_message: str | None = None,
        next_action: NextAction | None = None,
    ) -> None:
        if next_action is not None and not isinstance(next_action, NextAction):
            raise _bad_next_action(next_action)
        self._task_id = _require_str(task_id, "TaskRecord task_id")
        self._response = response
        self._status_message = status_message
        self._next_action = next_action

    @property
    def task_id(self) -> str:
        """The id of the task."""
        return self._task_id

    @property
    def response(self) -> str | None:
        """The task's response."""
        return self._response

    @property
    def status_message(self) -> str | None:
        """The task's status message."""
        return self._status_message

    @property
    def next_action(self) -> NextAction | None:
        """What the task asked for next (None when its failure was reported)."""
        return self._next_action

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskRecord):
            return NotImplemented
        return (
            self._task_id == other._task_id
            and self._response == other._response
            and self._status_message == other._status_message
            and self._next_action == other._next_action
        )

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((self._task_id, self._response, self._status_message, self._next_action))

    def __repr__(self) -> str:
        return (
            f"TaskRecord(task_id={self._task_id!r}, response={self._response!r}, "
            f"status_message={self._status_message!r}, next_action={self._next_action!r})"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            TaskRecord,
            (self._task_id, self._response, self._status_message, self._next_action),
        )


def task_record(task_id: str, result: TaskResult) -> TaskRecord:
    """The record of ``result``, which task ``task_id`` returned."""
    record = TaskRecord.__new__(TaskRecord)
    record._task_id = task_id
    record._response = result.response
    record._status_message = result.status_message
    record._next_action = result._next_action
    return record


class ExecutionResult:
    """What ``FlowRunner.run`` returns: the last task's ``response`` and the step's ``status``.

    A result from ``FlowRunner.run`` also tells the rest of the step: ``session_id``, the stored
    ``version`` and ``current_task_id`` after it, ``tasks`` (a :class:`TaskRecord` per task that
    ran, in order) and ``replayed`` (True when a recorded ``request_id`` answered, nothing run).
    These take no part in equality, hashing or ``repr``.
    """

    __slots__ = (
        "_current_task_id",
        "_replayed",
        "_response",
        "_session_id",
        "_status",
        "_tasks",
        "_version",
    )
    __match_args__ = ("response", "status")

    def __init__(
        self,
        response: str | None,
        status: ExecutionStatus,
        *,
        session_id: str | None = None,
        version: int | None = None,
        current_task_id: str | None = None,
        tasks: tuple[TaskRecord, ...] | list[TaskRecord] = (),
        replayed: bool = False,
    ) -> None:
        if not isinstance(status, ExecutionStatus):
            raise TypeError(
                f"ExecutionResult status must be an ExecutionStatus, got {type(status).__name__}"
            )
        self._response = response
        self._status = status
        self._session_id = session_id
        self._version = version
        self._current_task_id = current_task_id
        self._tasks = tuple(tasks)
        self._replayed = bool(replayed)

    @property
    def response(self) -> str | None:
        """The response of the last task that ran (None if it gave none)."""
        return self._response

    @property
    def status(self) -> ExecutionStatus:
        """How the step ended."""
        return self._status

    @property
    def session_id(self) -> str | None:
        """The id of the session the step ran on (None for a result not made by a runner)."""
        return self._session_id

    @property
    def version(self) -> int | None:
        """The session's stored version after the step (None for a result not made by a runner)."""
        return self._version

    @property
    def current_task_id(self) -> str | None:
        """The session's current task after the step (None for a result not made by a runner)."""
        return self._current_task_id

    @property
    def tasks(self) -> tuple[TaskRecord, ...]:
        """A :class:`TaskRecord` for each task that ran in the step, in order."""
        return self._tasks

    @property
    def replayed(self) -> bool:
        """True when the result was answered from the record of a ``request_id``: nothing ran."""
        return self._replayed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionResult):
            return NotImplemented
        return self._response == other._response and self._status == other._status

    def __hash__(self) -> int:
        return hash((self._response, self._status))

    def __repr__(self) -> str:
        return f"ExecutionResult(response={self._response!r}, status={self._status!r})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            _rebuild_result,
            (
                self._response,
                self._status,
                self._session_id,
                self._version,
                self._current_task_id,
                self._tasks,
                self._replayed,
            ),
        )


def step_result(
    response: str | None,
    status: ExecutionStatus,
    session_id: str | None,
    version: int | None,
    current_task_id: str | None,
    tasks: tuple[TaskRecord, ...],
    replayed: bool,
) -> ExecutionResult:
    """An ExecutionResult with the whole story of a step, from values already checked."""
    result = ExecutionResult.__new__(ExecutionResult)
    result._response = response
    result._status = status
    result._session_id = session_id
    result._version = version
    result._current_task_id = current_task_id
    result._tasks = tasks
    result._replayed = replayed
    return result


def as_replayed(result: ExecutionResult) -> ExecutionResult:
    """``result`` as a caller that did not run the step gets it: ``replayed`` True."""
    return step_result(
        result._response,
        result._status,
        result._session_id,
        result._version,
        result._current_task_id,
        result._tasks,
        True,
    )


def _rebuild_result(
    response: str | None,
    status: ExecutionStatus,
    session_id: str | None,
    version: int | None,
    current_task_id: str | None,
    tasks: tuple[TaskRecord, ...],
    replayed: bool,
) -> ExecutionResult:
    return ExecutionResult(
        response,
        status,
        session_id=session_id,
        version=version,
        current_task_id=current_task_id,
        tasks=tasks,
        replayed=replayed,
    )


def _bad_next_action(value: object) -> TypeError:
    return TypeError(
        "TaskResult next_action must be a NextAction such as NextAction.Continue, "
        f"got {type(value).__name__}: {value!r}"
    )


class TaskResult:
    """What a task returns: an optional ``response``, the ``next_action`` and a ``status_message``.

    ``task_id`` is stamped by the engine with the id of the task that produced the result.
    """

    __slots__ = ("_next_action", "response", "status_message", "task_id")

    def __init__(
        self,
        response: str | None = None,
        next_action: NextAction = _ACTIONS[CONTINUE],
        status_message: str | None = None,
    ) -> None:
        if not isinstance(next_action, NextAction):
            raise _bad_next_action(next_action)
        self.response = response
        self._next_action = next_action
        self.status_message = status_message
        self.task_id: str | None = None

    @property
    def next_action(self) -> NextAction:
        """What the engine does next, e.g. ``NextAction.Continue``."""
        return self._next_action

    @next_action.setter
    def next_action(self, value: NextAction) -> None:
        if not isinstance(value, NextAction):
            raise _bad_next_action(value)
        self._next_action = value

    @staticmethod
    def move_to_next() -> TaskResult:
        """``TaskResult(None, NextAction.Continue)``: go on to the next task on the next run."""
        return TaskResult(None, _ACTIONS[CONTINUE])

    @staticmethod
    def move_to_next_direct() -> TaskResult:
        """``TaskResult(None, NextAction.ContinueAndExecute)``: run the next task now."""
        return TaskResult(None, _ACTIONS[CONTINUE_AND_EXECUTE])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskResult):
            return NotImplemented
        return (
            self.response == other.response
            and self._next_action == other._next_action
            and self.status_message == other.status_message
            and self.task_id == other.task_id
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: task_id is stamped later

    def __repr__(self) -> str:
        return (
            f"TaskResult(response={self.response!r}, next_action={self._next_action!r}, "
            f"status_message={self.status_message!r}, task_id={self.task_id!r})"
        )


def set_version(result: ExecutionResult, version: int) -> None:
    """Stamp the stored version on the fresh result of a step the runner just saved."""
    result._version = version
