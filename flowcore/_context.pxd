# C layout of flowcore._context for the compiled build (the .py beside it is the one source).
cimport cython

@cython.final
@cython.freelist(16)
cdef class ChatMessage:
    cdef readonly object _role
    cdef readonly str _content
    cdef readonly object _micros

@cython.final
cdef class Context:
    cdef public dict _data
    cdef public list _chat
    cdef public object _max_chat_messages

@cython.locals(message=ChatMessage)
cpdef ChatMessage restore_message(object role, str content, object micros)

@cython.locals(ctx=Context)
cpdef Context restore_context(dict data, list chat, object max_chat_messages)
