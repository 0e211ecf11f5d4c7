# C signatures of flowcore._kernel for the compiled build (the .py beside it is the one source).
cimport cython
from flowcore._values cimport ExecutionResult, ExecutionStatus, TaskRecord, TaskResult, paused, scheduled, step_result, task_record

cpdef object find_next_task(dict out_edges, str from_id, object ctx)

cdef void _leave(object session, str task_id) except *

cpdef object apply_result(dict out_edges, dict tasks, object session, str task_id, TaskResult result)

cpdef object call_task(object run, str task_id, object ctx)

cpdef object not_a_result(str task_id, object value)

@cython.final
cdef class StepRun:
    cdef public object ctx
    cdef public str graph_id
    cdef public bint inline
    cdef public object max_steps
    cdef public dict out_edges
    cdef public object pending
    cdef public Py_ssize_t ran
    cdef public list records
    cdef public object response
    cdef public object session
    cdef public object sink
    cdef public object task
    cdef public str task_id
    cdef public object task_timeout
    cdef public dict tasks
    cdef public object version

    cpdef object begin(self)
    cpdef object run_inline(self)
    cpdef object finish(self, object result)
    cpdef ExecutionResult report(self, str message)
    cpdef ExecutionResult outcome(self, object response, ExecutionStatus status)
