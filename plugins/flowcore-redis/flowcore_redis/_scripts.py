"""The Lua scripts the storage runs in Redis, each on one key (cluster-safe), and their SHA1s.

The storage sends ``EVALSHA``; a server that does not have a script yet (a new or restarted
server, or after ``SCRIPT FLUSH``) answers NOSCRIPT, and the storage sends ``EVAL`` with the
source instead, which also caches it there.
"""

from __future__ import annotations

import hashlib

__all__ = ["DELETE", "DUE", "SAVE", "Script"]


class Script:
    """A Lua script: its source and its SHA1, as ``EVALSHA`` names it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


SAVE = Script(
    """
-- Compare-and-set of one session. KEYS[1]: its hash. ARGV: the version it was loaded at (0: new),
-- the blob, wake_at in microseconds ('' for none), this save's token, the ttl in milliseconds
-- ('' for none), '1' to set the ttl on every save ('0': at creation only).
-- Returns {1, previous wake_at or false} when saved; {2} when this very save was stored already
-- (sent again after a broken connection); {0, stored version (0: none)} when refused;
-- {-1, what the key holds} when the key is not a flowcore session.
local key = KEYS[1]
local stored = redis.pcall('HGET', key, 'v')
if type(stored) == 'table' then
  return {-1, redis.call('TYPE', key).ok}
end
if stored then
  stored = tonumber(stored)
  if not stored then return {-1, 'hash'} end
elseif redis.call('EXISTS', key) == 1 then
  return {-1, 'hash'}
else
  stored = 0
end
local expected = tonumber(ARGV[1])
if stored ~= expected then
  if stored == expected + 1 and redis.call('HGET', key, 't') == ARGV[4] then
    return {2}
  end
  return {0, stored}
end
local previous = redis.call('HGET', key, 'w')
if ARGV[3] == '' then
  redis.call('HSET', key, 'v', expected + 1, 'b', ARGV[2], 't', ARGV[4])
  if previous then redis.call('HDEL', key, 'w') end
else
  redis.call('HSET', key, 'v', expected + 1, 'b', ARGV[2], 't', ARGV[4], 'w', ARGV[3])
end
if ARGV[5] ~= '' and (expected == 0 or ARGV[6] == '1') then
  redis.call('PEXPIRE', key, ARGV[5])
end
return {1, previous or false}
"""
)

DELETE = Script(
    """
-- Delete one session. KEYS[1]: its hash. Returns 1 (deleted), 0 (none) or {-1, what the key
-- holds} when the key is not a flowcore session, which is left alone.
local key = KEYS[1]
local kind = redis.call('TYPE', key).ok
if kind == 'none' then return 0 end
if kind ~= 'hash' or not tonumber(redis.call('HGET', key, 'v') or '') then
  return {-1, kind}
end
redis.call('DEL', key)
return 1
"""
)

DUE = Script(
    """
-- A page of the waiting index up to now. KEYS[1]: the sorted set. ARGV: now in microseconds
-- ('' for Redis's own clock), offset, count. Returns {now, id, score, id, score, ...}.
local now = ARGV[1]
if now == '' then
  local time = redis.call('TIME')
  now = string.format('%.0f', tonumber(time[1]) * 1000000 + tonumber(time[2]))
end
local page = redis.call(
  'ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
table.insert(page, 1, now)
return page
"""
)
