# C layout of flowcore._values for the compiled build (the .py beside it is the one source).
cimport cython

cdef class NextAction:
    cdef readonly int _kind
    cdef readonly object _task_id

cdef class GoTo(NextAction):
    pass

cdef class ExecutionStatus:
    cdef readonly int _kind
    cdef readonly object _first
    cdef readonly object _second

cdef class Paused(ExecutionStatus):
    pass

cdef class Error(ExecutionStatus):
    pass

@cython.locals(status=Paused)
cpdef Paused paused(str next_task_id, str reason)

@cython.final
@cython.freelist(8)
cdef class ExecutionResult:
    cdef readonly object _response
    cdef readonly ExecutionStatus _status

@cython.final
@cython.freelist(8)
cdef class TaskResult:
    cdef public object response
    cdef NextAction _next_action
    cdef public object status_message
    cdef public object task_id
