# C types for flowcore._codec in the compiled build (the .py beside it is the one source).
cimport cython
from flowcore._context cimport Context, restore_context

@cython.locals(i=Py_ssize_t, n=Py_ssize_t, chat_list=list)
cpdef Context _build_context(object max_chat_messages, object data, object chat)

cpdef bint _all_str(list items)

cpdef bint _str_keys(dict mapping)

@cython.locals(depth=Py_ssize_t, max_depth=Py_ssize_t, budget=Py_ssize_t, level=list, below=list, items=list)
cpdef object _scan(dict data)

@cython.locals(depth=Py_ssize_t, max_depth=Py_ssize_t, order=list, level=list, below=list, items=list, holds_pending=bint)
cpdef object _settle(dict data)
