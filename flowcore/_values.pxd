# C layout of flowcore._values for the compiled build (the .py beside it is the one source).
cimport cython

cdef class NextAction:
    cdef readonly int _kind
    cdef readonly object _task_id

cdef class GoTo(NextAction):
    pass

cdef class WaitUntil(NextAction):
    pass

cdef class ExecutionStatus:
    cdef readonly int _kind
    cdef readonly object _first
    cdef readonly object _second

cdef class _NextTaskStatus(ExecutionStatus):
    pass

cdef class Paused(_NextTaskStatus):
    pass

cdef class Error(ExecutionStatus):
    pass

cdef class Scheduled(_NextTaskStatus):
    pass

@cython.locals(status=Paused)
cpdef Paused paused(str next_task_id, str reason)

@cython.locals(status=Scheduled)
cpdef Scheduled scheduled(str next_task_id, object wake_at)

@cython.final
@cython.freelist(8)
cdef class TaskRecord:
    cdef readonly object _task_id
    cdef readonly object _response
    cdef readonly object _status_message
    cdef readonly object _next_action

@cython.final
@cython.freelist(8)
cdef class ExecutionResult:
    cdef readonly object _response
    cdef readonly ExecutionStatus _status
    cdef readonly object _session_id
    cdef readonly object _version
    cdef readonly object _current_task_id
    cdef readonly tuple _tasks
    cdef readonly bint _replayed

@cython.final
@cython.freelist(8)
cdef class TaskResult:
    cdef public object response
    cdef NextAction _next_action
    cdef public object status_message
    cdef public object task_id

@cython.locals(record=TaskRecord)
cpdef TaskRecord task_record(str task_id, TaskResult result)

@cython.locals(result=ExecutionResult)
cpdef ExecutionResult step_result(
    object response,
    ExecutionStatus status,
    object session_id,
    object version,
    object current_task_id,
    tuple tasks,
    bint replayed,
)

cpdef void set_version(ExecutionResult result, object version)

cpdef ExecutionResult as_replayed(ExecutionResult result)
