"""session_as_json: a stored session as plain JSON values, for people and HTTP clients."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from flowcore._session import Session

__all__ = ["session_as_json"]

# Python refuses to write an int of more than 4,300 digits in decimal (it would take time
# quadratic in its size): ints beyond this many bits are shown as hex text instead.
_MAX_DECIMAL_BITS = 14_000


def session_as_json(session: Session) -> dict[str, Any]:
    """``session`` as JSON values: its fields, its context data and its chat history.

    What ``flowcore sessions show`` prints. Every value converts, whatever the context holds:
    values JSON has no type for are shown as text (dates and times in ISO 8601, durations as
    ``str(timedelta)``, Decimal and UUID as their text, bytes in hex, NaN and infinities as
    ``"nan"``/``"inf"``/``"-inf"``, ints of more than 4,000 digits as hex text); tuples and
    sets become lists, enums their value, dataclasses objects of their fields, other
    registered types their ``repr``. Dict keys that are not strings become their JSON text.
    The result is a view for reading, not a format to load sessions back from.
    """
    ctx = session.context
    return {
        "id": session.id,
        "graph_id": session.graph_id,
        "graph_version": session.graph_version,
        "version": session.version,
        "current_task_id": session.current_task_id,
        "status_message": session.status_message,
        "is_completed": session.is_completed,
        "wake_at": None if session.wake_at is None else session.wake_at.isoformat(),
        "history": list(session.history),
        "context": {key: _jsonable(value) for key, value in ctx.items()},
        "chat": [
            {
                "role": message.role.value,
                "content": message.content,
                "timestamp": message.timestamp.isoformat(),
            }
            for message in ctx.get_chat_history()
        ],
        "max_chat_messages": ctx.max_chat_messages,
    }


def _jsonable(value: Any) -> Any:
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if value.bit_length() <= _MAX_DECIMAL_BITS else hex(value)
    if t is float:
        return value if math.isfinite(value) else str(value)  # JSON has no NaN or infinity
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, dict):
        return {_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (timedelta, Decimal, UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    for base in (bool, int, float, str):  # a registered subclass of a JSON type
        if isinstance(value, base):
            return _jsonable(base(value))
    return _repr(value)


def _repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a registered type's own repr failed: say so, do not fail the view
        return f"<{type(value).__qualname__}: repr() raised {type(exc).__name__}>"
    return text if len(text) <= 200 else f"{text[:200]}… ({len(text):,} characters)"


def _key(key: Any) -> str:
    if type(key) is str:
        return key
    converted = _jsonable(key)
    return converted if isinstance(converted, str) else json.dumps(converted, sort_keys=True)
