"""The messages flowcore-celery sends: their task names, their arguments, how they are sent.

A step message's keyword arguments:

- ``session_id``; ``updates``: the ``context_updates`` in flowcore's own format (the session
  codec, base64), so that every value a context can hold arrives as the same type, or None;
- ``request_id``: the drive's request id; step ``n`` of the drive (``step``) runs with
  ``request_id`` for ``n == 0`` and ``f"{request_id}#{n}"`` after, so every step of a drive has an
  id of its own that a redelivered or duplicated message repeats;
- ``drive``: keep stepping while the session is Paused;
- ``wake``: a timer's wake, with ``wake_at`` (ISO 8601) when the sender knew the time: the step
  runs only if the session still waits for that time, with a request id made of the session's
  version and ``wake_at``, the same for every waker of that timer (the eta message, wake_due).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from flowcore import Session
from flowcore.codec import decode_session, encode_session

__all__ = [
    "STEP_TASK",
    "WAKE_DUE_TASK",
    "decode_updates",
    "encode_updates",
    "request_id_of",
    "wake_request_id",
]

STEP_TASK = "flowcore.step"
WAKE_DUE_TASK = "flowcore.wake_due"

_CARRIER = "updates"  # the session id and task id of the carrier session; nothing reads them


def encode_updates(updates: Mapping[str, Any] | None) -> str | None:
    """``context_updates`` for a message (SerializationError, naming the key, if one cannot
    be stored: at submit, not in the worker)."""
    if not updates:
        return None
    carrier = Session.new_from_task(_CARRIER, _CARRIER, context=dict(updates))
    return base64.b64encode(encode_session(carrier)).decode("ascii")


def decode_updates(text: str | None) -> dict[str, Any] | None:
    """The ``context_updates`` a message carries."""
    if text is None:
        return None
    carrier = decode_session(base64.b64decode(text), session_id=_CARRIER, version=0)
    return {key: carrier.context.get(key) for key in carrier.context}


def request_id_of(base: str, step: int) -> str:
    """The request id of step ``step`` of a drive sent with request id ``base``."""
    return base if step == 0 else f"{base}#{step}"


def wake_request_id(version: int, wake_at: str) -> str:
    """The request id of the step that wakes a session stored at ``version``, due at
    ``wake_at``: every waker of that timer makes the same one."""
    return f"wake:{version}:{wake_at}"
