"""Keys a Redis Cluster can serve: one slot per session, scripts that touch only their key's slot,
and no KEYS or SCAN ever sent.

The test watches every command a server receives (MONITOR, on a server of its own so that no
other client's commands mix in) while a storage creates, steps, schedules, lists, wakes and
deletes sessions, and checks what a cluster needs: each script names one key, and every key it
touches inside hashes to that key's slot; every command from the client names at most one key.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis
from flowcore_redis import RedisSessionStorage
from redis.crc import key_slot
from redis_servers import PrivateRedis

from flowcore import Session

IDS = ["claim-7", "{braced}", "a}b{c", "100%", "", "élève ✓", "x" * 300]

_LINE = re.compile(rb"^[\d.]+ \[(\d+) (lua|[^\]]+)\] (.*)$")
_ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_KEYLESS = {b"TIME", b"INFO", b"PING", b"ECHO", b"CLIENT", b"HELLO", b"SELECT", b"AUTH"}
_CLIENT_COMMANDS = {
    b"HMGET", b"EVALSHA", b"EVAL", b"ZADD", b"ZREM", b"ZRANGEBYLEX", b"ZRANDMEMBER",
    b"HEXISTS", b"TYPE", b"GET", b"SET", b"INFO", b"CLIENT", b"HELLO", b"PING", b"SELECT",
    b"ECHO",
}  # fmt: skip


def unescape(argument: bytes) -> bytes:
    """A MONITOR argument as it was sent (MONITOR writes bytes as \\xNN, \\", \\\\, \\n...)."""
    return argument.decode("unicode_escape").encode("latin-1")


class Monitor:
    """MONITOR on a server, read by a thread until ``stop()``: each command as its client kind
    (``lua`` for a command run by a script) and its arguments."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.socket.sendall(b"MONITOR\r\n")
        self.buffer = b""
        assert self._line() == b"+OK"
        self.commands: list[tuple[bytes, list[bytes]]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.socket.recv(65536)
            if not data:
                raise EOFError
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _read(self) -> None:
        while True:
            line = self._line()
            match = _LINE.match(line.lstrip(b"+"))
            assert match, line
            arguments = [unescape(a) for a in _ARGUMENT.findall(match.group(3))]
            if arguments == [b"ECHO", b"monitor-done"]:
                return
            self.commands.append((match.group(2), arguments))

    def stop(self, port: int) -> None:
        with redis.Redis(port=port) as client:
            client.echo("monitor-done")
        self.thread.join(timeout=10)
        self.socket.close()


async def workload(url: str, prefix: str = "app:") -> RedisSessionStorage:
    """Everything a storage does, on ids that test the hash tag."""
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    async with RedisSessionStorage(url, prefix=prefix, ttl=60) as storage:
        for session_id in IDS:
            session = Session.new_from_task(session_id, "start", context={"n": 1})
            await storage.save(session)
            session.wake_at = past
            await storage.save(session)
        assert sorted(await storage.due_sessions()) == sorted(IDS)
        assert await storage.list_sessions() == sorted(IDS)
        for session_id in IDS:
            woken = await storage.get(session_id)
            assert woken is not None
            woken.wake_at = None
            await storage.save(woken)
        assert await storage.due_sessions() == []
        await storage.delete(IDS[0])
        assert await storage.get(IDS[0]) is None
    return storage


@pytest.fixture
def watched(private_redis: Callable[..., PrivateRedis]) -> tuple[PrivateRedis, Monitor]:
    server = private_redis()
    return server, Monitor(server.port)


async def test_every_command_can_be_routed_to_one_cluster_slot(
    watched: tuple[PrivateRedis, Monitor],
) -> None:
    server, monitor = watched
    storage = await workload(server.url)
    monitor.stop(server.port)

    scripts = 0
    declared: bytes | None = None
    for kind, arguments in monitor.commands:
        name = arguments[0].upper()
        if kind == b"lua":
            assert declared is not None, arguments
            if name not in _KEYLESS:
                assert key_slot(arguments[1]) == key_slot(declared), (arguments, declared)
            continue
        declared = None
        assert name in _CLIENT_COMMANDS, arguments  # no KEYS, no SCAN, nothing else
        if name in (b"EVALSHA", b"EVAL"):
            assert arguments[2] == b"1", arguments  # one key, declared
            declared = arguments[3]
            scripts += 1
    assert scripts > 3 * len(IDS)
    assert sum(kind == b"lua" for kind, _ in monitor.commands) > 3 * len(IDS)
    assert storage.key_of("claim-7") == "app:{claim-7}"


async def test_each_session_is_one_key_whose_hash_tag_is_its_id(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    storage = await workload(redis_url, prefix)

    keys = set(raw.scan_iter(match=f"{prefix}*"))
    indexes = {f"{prefix}{name}".encode() for name in ("sessions", "waiting", "generation")}
    sessions = keys - indexes
    assert len(sessions) == len(IDS) - 1  # one key per session (IDS[0] was deleted)
    for session_id in IDS[1:]:
        key = storage.key_of(session_id).encode()
        assert key in sessions
        tag = key[len(prefix) + 1 : -1]
        # The tag is the id (with %, { and } escaped), and it alone decides the slot.
        assert tag.replace(b"%7B", b"{").replace(b"%7D", b"}").replace(b"%25", b"%") == (
            session_id.encode()
        )
        if tag:
            assert key_slot(key) == key_slot(tag)
            assert key_slot(key) == key_slot(b"other:{" + tag + b"}:key")
    # Two ids never share a key, whatever braces and percent signs they hold.
    tricky = ["%7B", "{", "%257B", "%", "%25", "}", "%7D", "{}", "%7B%7D"]
    assert len({storage.key_of(i) for i in tricky}) == len(tricky)
