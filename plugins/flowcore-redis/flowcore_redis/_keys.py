"""Where a storage keeps what in Redis: one hash per session, two sorted sets to find them.

With the prefix ``flowcore:`` (the default):

- ``flowcore:{<session id>}``: a hash, the session. Fields ``v`` (its version), ``b`` (the blob
  ``flowcore.codec.encode_session`` wrote), ``w`` (its ``wake_at`` in integer microseconds since
  1970-01-01 UTC, only while it waits for a time) and ``t`` (a token naming the save that wrote
  it, so that a save sent again after a broken connection is recognised). The session id is the
  key's hash tag: every key of a session hashes to one Redis Cluster slot, which the scripts that
  change it need. In the tag, ``%``, ``{`` and ``}`` of an id are written ``%25``, ``%7B`` and
  ``%7D``, so that the tag ends where the id does and two ids never share a key.
- ``flowcore:sessions``: a sorted set of the session ids (UTF-8), all with score 0, so that Redis
  orders them byte by byte, which is code point order: ``list_sessions`` pages through it.
- ``flowcore:waiting``: a sorted set of the ids of the sessions that wait for a time, scored by
  their ``wake_at`` in microseconds: ``due_sessions`` reads its lowest scores.
- ``flowcore:generation``: a random token written when a storage first connects. A storage that
  finds a session missing and this token changed knows that Redis lost its data (flushed, or
  restarted without persistence) since it connected, and says so.

The sorted sets are indexes, not the truth: a session's hash is. They may hold ids of sessions
that expired or were deleted (readers check each id and drop those), and a save writes its entry
both before and after the session, so that a session is never stored without one.
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """The keys of one prefix."""

    __slots__ = ("generation", "prefix", "sessions", "waiting")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode()
        self.sessions = self.prefix + b"sessions"
        self.waiting = self.prefix + b"waiting"
        self.generation = self.prefix + b"generation"

    def session(self, member: bytes) -> bytes:
        """The key of the session whose id is ``member`` (the id in UTF-8)."""
        if b"%" in member or b"{" in member or b"}" in member:
            member = member.replace(b"%", b"%25").replace(b"{", b"%7B").replace(b"}", b"%7D")
        return self.prefix + b"{" + member + b"}"
