"""How flowcore stores sessions: msgpack with a one-byte format version, never pickle.

Context values may be None, bool, int (any size), float, str, bytes, list, tuple, dict, set,
frozenset, datetime, date, time, timedelta, UUID, Decimal, and classes registered with
:func:`register_type` (enums and dataclasses need no functions). Only these exact types are
stored (a subclass must be registered itself), and each comes back equal and of the same type;
an aware datetime or time comes back with a fixed-offset ``datetime.timezone``. Dict keys may
be any hashable supported value (str, int, float, bool, None, tuple, frozenset, date, UUID...).

A value that cannot be stored raises :class:`flowcore.SerializationError` naming its key path
(``context['order']['items'][3]: cannot store object of type lock; ...``); a blob that cannot
be read raises :class:`flowcore.StorageError` naming the session. The format is described in
full in ``flowcore/_codec.py``.
"""

from __future__ import annotations

from flowcore._codec import (
    FORMAT_VERSION,
    MAX_DEPTH,
    decode_session,
    encode_session,
    register_type,
    unregister_type,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "decode_session",
    "encode_session",
    "register_type",
    "unregister_type",
]
