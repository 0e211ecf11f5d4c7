# C signatures of flowcore._kernel for the compiled build (the .py beside it is the one source).
from flowcore._values cimport TaskResult

cpdef object find_next_task(dict routes, str from_id, object ctx)

cdef void _leave(object session, str task_id) except *

cpdef object apply_result(dict routes, dict tasks, object session, str task_id, TaskResult result)
