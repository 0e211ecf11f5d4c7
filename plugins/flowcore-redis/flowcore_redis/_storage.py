"""RedisSessionStorage: flowcore sessions in Redis, one hash per session.

A step costs two commands: ``HMGET`` to load the session, and one script run with ``EVALSHA``
that compares the stored version with the loaded one and, only if they match, writes the new
version, the blob and the session's ``wake_at``, and sets its expiry, all at once (a Lua script
runs atomically in Redis). The sorted sets that list sessions and find the due ones are written
beside it, before and after (see ``_keys``), and read with a check of every id they give.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    BusyLoadingError,
    MaxConnectionsError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowcore import (
    Session,
    SessionConflict,
    SessionStorage,
    StorageError,
    hide_password,
    quote_id,
    resolve_storage_options,
)
from flowcore.codec import decode_session, encode_session
from flowcore_redis._connections import (
    ClusterCommands,
    Command,
    CommandTimeout,
    Connections,
    PoolTimeout,
    Reply,
    Transport,
)
from flowcore_redis._keys import Keys
from flowcore_redis._options import CLIENT_OPTIONS, CLUSTER_OPTIONS, OPTIONS
from flowcore_redis._scripts import DELETE, DUE, SAVE, Script
from flowcore_redis._urls import CONNECTION_QUERY, redis_url

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.connection import ConnectionPool
    from typing_extensions import Unpack

    from flowcore_redis._options import RedisOptions

__all__ = ["RedisSessionStorage"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_MILLISECOND = timedelta(milliseconds=1)
_DRIVER_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
"""What redis-py and the connections raise (CommandTimeout and PoolTimeout are OSErrors)."""
_MINIMUM_VERSION = (6, 2)  # ZADD ... LT and ZRANDMEMBER
_PAGE = 1000  # ids read from an index per command when no limit says how many
_SAMPLE = b"3"  # index entries checked by each create, when sessions expire (see _keys)
_RECONCILE_ROUNDS = 4


def _micros(when: datetime) -> int:
    """An aware datetime as integer microseconds since 1970-01-01 UTC (the blob's unit)."""
    return (when - _EPOCH) // _MICROSECOND


class RedisSessionStorage(SessionStorage):
    """Sessions in Redis, on redis-py's asyncio client.

    Make one with ``flowcore.open_storage("redis://host:6379/0")``, with
    ``RedisSessionStorage(url, **options)``, or with ``RedisSessionStorage(client=client,
    **options)`` on an application's own ``redis.asyncio.Redis``. It connects on first use or in
    ``async with``; use it from one event loop.

    - ``prefix``: what every key of the storage starts with (default ``"flowcore:"``).
    - ``ttl``: each session's Redis key expires this long after its creation (a ``timedelta``
      or seconds, at least 1 ms); None, the default, keeps sessions until they are deleted.
      Redis expires the key by its own clock.
    - ``refresh_ttl``: True (the default) sets the expiry again on every save, so ``ttl`` is
      how long a session may sit idle; False sets it at creation only, so ``ttl`` is how long
      a session lives however busy it is.
    - ``pool_size``: at most this many connections (default 10); a command that finds none
      free waits up to ``pool_timeout`` seconds (default 10), then fails.
    - ``connect_timeout``: seconds to wait for the server to accept a connection (default 5);
      ``command_timeout``: seconds any one command may go unanswered before its connection is
      closed and the command fails (default 10; None: no limit).
    - ``connection_options``: more keyword arguments for redis-py's ``ConnectionPool`` (e.g.
      ``client_name``, ``ssl_password``, ``credential_provider``). Keywords only.

    Options may also be given in the URL's query (``?prefix=app:&ttl=3600``), beside the
    connection's ``db`` and, for ``rediss://``, its TLS settings (``ssl_cert_reqs``,
    ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_check_hostname``). With ``client=``, the client says how to connect: only
    ``prefix``, ``ttl``, ``refresh_ttl``, ``pool_size``, ``pool_timeout`` and
    ``command_timeout`` apply (only the first three for a ``redis.asyncio.RedisCluster``,
    whose own settings say how to wait and retry), and ``close()`` leaves the client open.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        **options: Unpack[RedisOptions],
    ) -> None:
        self._pool: ConnectionPool | None = None
        self._cluster: RedisCluster | None = None
        if client is None:
            if url is None:
                raise StorageError(
                    "RedisSessionStorage needs a URL (e.g. redis://localhost:6379/0) or "
                    "client=, an application's redis.asyncio.Redis"
                )
            address = redis_url(url)
            values = resolve_storage_options(
                OPTIONS, options, address.options, address.shown, connection=CONNECTION_QUERY
            )
            self._url = address.shown
            self._pool = _make_pool(address.connection, values, address.shown)
            self._owns_pool = True
        else:
            if url is not None:
                raise StorageError(
                    f"RedisSessionStorage takes a URL or client=, not both (got "
                    f"{quote_id(hide_password(str(url)))} and a client): the client already "
                    "says where to connect"
                )
            pool, cluster = _client_parts(client)
            self._pool, self._cluster = pool, cluster
            if cluster is not None:
                self._url = _url_of_cluster(cluster)
            else:
                assert pool is not None
                self._url = _url_of(pool)
            values = resolve_storage_options(
                CLIENT_OPTIONS if cluster is None else CLUSTER_OPTIONS, options, {}, self._url
            )
            for name, option in OPTIONS.items():  # the client's own settings apply instead
                values.setdefault(name, option.default)
            values["connect_timeout"] = None
            self._owns_pool = False
        self._prefix: str = values["prefix"]
        self._keys = Keys(self._prefix)
        self._ttl: timedelta | None = values["ttl"]
        self._ttl_ms = b"" if self._ttl is None else b"%d" % (self._ttl // _MILLISECOND)
        self._refresh_ttl: bool = values["refresh_ttl"]
        self._refresh = b"1" if self._refresh_ttl else b"0"
        self._pool_size: int = values["pool_size"]
        self._pool_timeout: float = values["pool_timeout"]
        self._connect_timeout: float | None = values["connect_timeout"]
        self._command_timeout: float | None = values["command_timeout"]
        self._transport: Transport | None = None
        self._token_base = os.urandom(6).hex().encode() + b":"
        self._tokens = itertools.count()
        self._generation: bytes | None = None
        self._ready = False
        self._closed = False
        self._start_lock = asyncio.Lock()

    # -- what it is ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the sessions are kept, with any password hidden."""
        return self._url

    @property
    def prefix(self) -> str:
        """What every key of this storage starts with."""
        return self._prefix

    @property
    def ttl(self) -> timedelta | None:
        """How long a session's key lives (None: until it is deleted)."""
        return self._ttl

    @property
    def refresh_ttl(self) -> bool:
        """True when every save sets the expiry again; False when only the creation does."""
        return self._refresh_ttl

    def key_of(self, session_id: str) -> str:
        """The Redis key of a session's hash, e.g. ``flowcore:{claim-7}``."""
        return self._keys.session(self._member(session_id)).decode()

    # -- the SessionStorage contract -----------------------------------------------------------

    async def get(self, session_id: str) -> Session | None:
        """The stored session (an independent copy), or None when it is missing or expired."""
        member = self._member(session_id)
        key = self._keys.session(member)
        action = f"load session {quote_id(session_id)} from"
        reply = (await self._run([(b"HMGET", key, b"v", b"b")], action))[0][0]
        if isinstance(reply, ResponseError):
            raise await self._refused(action, reply, key)
        version, blob = reply
        if version is None:
            if blob is not None:
                raise self._foreign(action, key, "a hash with a blob but no version field")
            await self._check_missing(session_id, key, action)
            return None
        try:
            number = int(version)
        except ValueError:
            raise self._foreign(
                action, key, f"a hash whose version field is {quote_id(version)}"
            ) from None
        if blob is None:
            raise self._foreign(action, key, "a hash with a version but no blob field")
        return decode_session(blob, session_id=session_id, version=number)

    async def save(self, session: Session) -> None:
        """Store ``session`` if its version is the stored one; then bump ``session.version``.

        Version 0 creates the session (an expired one with the same id is replaced). A refused
        save raises SessionConflict and stores nothing. The version check and every write of
        the session are one script, which Redis runs atomically.
        """
        member = self._member(session.id)
        blob = encode_session(session)  # SerializationError here changes nothing
        expected = session.version
        wake = b"" if session.wake_at is None else b"%d" % _micros(session.wake_at)
        key = self._keys.session(member)
        keys = self._keys
        token = self._token_base + b"%x" % next(self._tokens)
        arguments = (key, b"%d" % expected, blob, wake, token, self._ttl_ms, self._refresh)
        commands: list[Command] = []
        sampling = expected == 0 and self._ttl is not None
        if expected == 0:
            commands.append((b"ZADD", keys.sessions, b"0", member))
            if sampling:
                commands.append((b"ZRANDMEMBER", keys.sessions, _SAMPLE))
        if wake:
            commands.append((b"ZADD", keys.waiting, b"LT", wake, member))
        commands.append((b"EVALSHA", SAVE.sha, b"1", *arguments))
        action = f"save session {quote_id(session.id)} to"
        replies, again = await self._run(commands, action, saving=True)
        reply = replies[-1]
        if isinstance(reply, NoScriptError):
            more, again_now = await self._run(
                [(b"EVAL", SAVE.source, b"1", *arguments)], action, saving=True
            )
            reply, again = more[0], again or again_now
        if isinstance(reply, ResponseError):
            raise await self._refused(action, reply, key, saving=True)
        status = reply[0]
        if status <= 0:
            raise await self._refusal(session, reply, key, again, action)
        session.version = expected + 1
        previous = reply[1] if status == 1 else None
        after: list[Command] = []
        if expected == 0:
            after.append((b"ZADD", keys.sessions, b"0", member))
        if wake and (expected == 0 or status == 2 or previous != wake):
            after.append((b"ZADD", keys.waiting, b"LT", wake, member))
        sample = replies[1] if sampling else None
        sampled = [m for m in sample if m != member] if isinstance(sample, list) else []
        after += [(b"HEXISTS", keys.session(m), b"v") for m in sampled]
        if after:
            await self._after_save(after, sampled)

    async def delete(self, session_id: str) -> None:
        """Remove the session, whatever its version (a missing id is fine)."""
        member = self._member(session_id)
        key = self._keys.session(member)
        action = f"delete session {quote_id(session_id)} from"
        reply = await self._script(DELETE, key, (), action)
        if isinstance(reply, list):
            raise self._foreign(action, key, f"a {reply[1].decode()}")
        # Then its index entries (again if a create of the same id slipped in between). The
        # session is deleted already: a failure here leaves entries the next reader drops.
        await self._reconcile([member], action, quietly=True)

    async def list_sessions(
        self, *, limit: int | None = None, after: str | None = None
    ) -> list[str]:
        """The ids of the live sessions, sorted by code point: at most ``limit`` of them (None:
        all), only those after ``after``. Expired and deleted sessions are not listed.

        Reads the index page by page (``ZRANGEBYLEX``), checks that each session is there, and
        drops from the index the ids of sessions that are gone.
        """
        self.check_listing(limit, after)
        if limit == 0:
            return []
        start = b"-" if after is None else b"(" + self._bound(after)
        action = "list the sessions in"
        listed: list[str] = []
        gone: list[bytes] = []
        while limit is None or len(listed) < limit:
            count = _PAGE if limit is None else min(max(limit - len(listed), 16), _PAGE)
            reply = await self._one(
                (b"ZRANGEBYLEX", self._keys.sessions, start, b"+", b"LIMIT", b"0", b"%d" % count),
                action,
                self._keys.sessions,
            )
            if not reply:
                break
            checks = [(b"HEXISTS", self._keys.session(m), b"v") for m in reply]
            found = (await self._run(checks, action))[0]
            for member, there in zip(reply, found, strict=True):
                text = _text_of(member)
                if there == 1 and text is not None:
                    listed.append(text)
                else:
                    gone.append(member)
            if len(reply) < count:
                break
            start = b"(" + reply[-1]
        if gone:
            await self._reconcile(gone, action, quietly=True)
        return listed if limit is None else listed[:limit]

    async def due_sessions(
        self, now: datetime | None = None, limit: int | None = None
    ) -> list[str]:
        """The ids of the live sessions whose ``wake_at`` is at or before ``now``, earliest
        ``wake_at`` first (ties by id, by code point), at most ``limit`` of them (None: all).

        ``now`` is an aware datetime, or None for Redis's clock (its ``TIME``, read inside the
        script that reads the index). Expired sessions are never due. Reads the lowest scores of
        the waiting index: with a limit, little more than ``limit`` entries, however many
        sessions are stored.
        """
        self.check_due(now, limit)
        if limit == 0:
            return []
        moment = b"" if now is None else b"%d" % _micros(now)
        count = _PAGE if limit is None else min(max(limit, 16), _PAGE)
        action = "find the due sessions in"
        due: list[tuple[int, str]] = []
        repair: list[bytes] = []
        offset = 0
        while True:
            page = await self._script(
                DUE, self._keys.waiting, (moment, b"%d" % offset, b"%d" % count), action
            )
            moment, pairs = page[0], page[1:]
            members, scores = pairs[0::2], [float(s) for s in pairs[1::2]]
            states = (
                await self._run(
                    [(b"HMGET", self._keys.session(m), b"v", b"w") for m in members], action
                )
            )[0]
            deadline = int(moment)
            for member, score, state in zip(members, scores, states, strict=True):
                wake = _wake_of(state)
                text = _text_of(member)
                if wake is None or text is None:
                    repair.append(member)  # no longer waiting, or gone
                    continue
                if float(wake) != score:
                    repair.append(member)  # moved: the index gives an earlier time
                if wake <= deadline:
                    due.append((wake, text))
            if len(members) < count:
                break
            if limit is not None and len(due) >= limit:
                # Every entry not read yet scores at least the last one read, and a session
                # never wakes earlier than its entry says: none can come before the limit-th.
                due.sort()
                if scores[-1] > due[limit - 1][0]:
                    break
            offset += count
        if repair:
            await self._reconcile(repair, action, quietly=True)
        due.sort()
        chosen = due if limit is None else due[:limit]
        return [text for _, text in chosen]

    async def cleanup(self, *, batch: int = 1000) -> int:
        """Nothing to do, so 0: Redis deletes expired sessions itself, by its own clock.

        Here for code written for a storage that needs it (as ``flowcore sessions cleanup``
        is); ``batch`` is checked and not used.
        """
        if type(batch) is not int or batch < 1:
            raise ValueError(f"batch must be a positive int, got {quote_id(batch)}")
        return 0

    async def close(self) -> None:
        """Give the connections back (and close them, unless they are an application's client's).
        The storage cannot be reused."""
        if self._closed:
            return
        self._closed = True
        self._ready = False
        async with self._start_lock:  # let a connect under way finish first
            if self._transport is not None:
                await self._transport.close()

    async def __aenter__(self) -> RedisSessionStorage:
        """Connect now rather than on first use."""
        if not self._ready:
            await self._start()
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._ready else "not connected"
        return f"<RedisSessionStorage {self._url} prefix={self._prefix!r} ({state})>"

    # -- connecting ----------------------------------------------------------------------------

    async def _start(self) -> None:
        async with self._start_lock:
            if self._ready:
                return
            if self._closed:
                raise StorageError(f"RedisSessionStorage for {self._url} is closed; open a new one")
            if self._transport is None:
                if self._cluster is not None:
                    self._transport = ClusterCommands(self._cluster)
                else:
                    assert self._pool is not None
                    self._transport = Connections(
                        self._pool,
                        size=self._pool_size,
                        pool_timeout=self._pool_timeout,
                        connect_timeout=self._connect_timeout,
                        command_timeout=self._command_timeout,
                        owns_pool=self._owns_pool,
                    )
            try:
                await self._connect()
            except BaseException:
                # Nothing stays open when connecting fails (``async with`` closes nothing
                # then); a later call connects anew.
                transport, self._transport = self._transport, None
                await transport.close()
                raise
            self._ready = True

    async def _connect(self) -> None:
        """Check the server and the keys, and read the generation (see ``_keys``)."""
        transport = self._transport
        assert transport is not None
        keys = self._keys
        token = os.urandom(16).hex().encode()
        commands = [
            (b"SET", keys.generation, token, b"NX"),
            (b"GET", keys.generation),
            (b"TYPE", keys.sessions),
            (b"TYPE", keys.waiting),
            (b"INFO", b"server"),
        ]
        try:
            replies, _ = await transport.run(commands)
        except _DRIVER_ERRORS as exc:
            raise self._failure("connect to", exc) from exc
        for reply, key in zip(
            replies[:4],
            (keys.generation, keys.generation, keys.sessions, keys.waiting),
            strict=True,
        ):
            if isinstance(reply, ResponseError):  # no TYPE to ask: not connected yet
                if str(reply).startswith("WRONGTYPE"):
                    raise self._foreign("connect to", key, "a value of another type")
                raise self._failure("connect to", reply)
        for reply, key in zip(replies[2:4], (keys.sessions, keys.waiting), strict=True):
            kind = reply.decode() if isinstance(reply, bytes) else str(reply)
            if kind not in ("none", "zset"):
                raise self._foreign("connect to", key, f"a {kind}")
        self._check_version(replies[4])
        self._generation = replies[1]

    def _check_version(self, info: Reply) -> None:
        if not isinstance(info, bytes):
            return  # INFO refused (an ACL, say): the commands will tell
        for line in info.decode(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name == "redis_version":
                try:
                    version = tuple(int(part) for part in value.strip().split(".")[:2])
                except ValueError:
                    return
                if version < _MINIMUM_VERSION:
                    raise StorageError(
                        f"Redis at {self._url} is version {value.strip()}; flowcore-redis needs "
                        "Redis 6.2 or later (for ZADD ... LT and ZRANDMEMBER)"
                    )
                return

    # -- commands ------------------------------------------------------------------------------

    async def _run(
        self, commands: Sequence[Command], action: str, *, saving: bool = False
    ) -> tuple[list[Reply], bool]:
        """Send ``commands`` at once; their replies (an error reply as a ResponseError), and
        whether they were sent twice (see Connections.run)."""
        if not self._ready:
            await self._start()
        transport = self._transport
        assert transport is not None
        try:
            return await transport.run(commands)
        except _DRIVER_ERRORS as exc:
            raise self._failure(action, exc, saving=saving) from exc

    async def _one(self, command: Command, action: str, key: bytes) -> Any:
        """The reply of one command, which must not be an error."""
        reply = (await self._run([command], action))[0][0]
        if isinstance(reply, ResponseError):
            raise await self._refused(action, reply, key)
        return reply

    async def _script(
        self, script: Script, key: bytes, arguments: tuple[bytes, ...], action: str
    ) -> Any:
        """Run ``script`` on ``key`` with ``EVALSHA``, or ``EVAL`` when Redis lacks it."""
        call = (b"EVALSHA", script.sha, b"1", key, *arguments)
        reply = (await self._run([call], action))[0][0]
        if isinstance(reply, NoScriptError):
            call = (b"EVAL", script.source, b"1", key, *arguments)
            reply = (await self._run([call], action))[0][0]
        if isinstance(reply, ResponseError):
            raise await self._refused(action, reply, key)
        return reply

    async def _after_save(self, commands: list[Command], sampled: list[bytes]) -> None:
        """The index entries a save writes after it, and the sampled entries a create checks.

        The session is saved already: a failure here is not the save's. The entries written
        before the save stand, and the next reader of the index repairs what is left.
        """
        try:
            replies, _ = await self._run(commands, "update the indexes of")
            if sampled:
                there = replies[-len(sampled) :]
                gone = [m for m, found in zip(sampled, there, strict=True) if found != 1]
                if gone:
                    await self._reconcile(gone, "update the indexes of", quietly=True)
        except StorageError:
            pass

    async def _reconcile(self, members: list[bytes], action: str, *, quietly: bool = False) -> None:
        """Make the index entries of ``members`` say what their sessions say now.

        Each round reads the sessions, writes their entries, and reads the sessions again: a
        session that changed meanwhile (its writer may have written its entries before this
        round wrote older ones) gets another round. When the last write matches what the
        sessions hold, the entries are right, since every later save writes its own.
        """
        keys = self._keys
        try:
            for _ in range(_RECONCILE_ROUNDS):
                reads = [(b"HMGET", keys.session(m), b"v", b"w") for m in members]
                states = [_state_of(r) for r in (await self._run(reads, action))[0]]
                writes: list[Command] = []
                for member, state in zip(members, states, strict=True):
                    if state is None:
                        writes.append((b"ZREM", keys.sessions, member))
                        writes.append((b"ZREM", keys.waiting, member))
                        continue
                    writes.append((b"ZADD", keys.sessions, b"0", member))
                    if state[1] is None:
                        writes.append((b"ZREM", keys.waiting, member))
                    else:
                        writes.append((b"ZADD", keys.waiting, state[1], member))
                await self._run(writes, action)
                again = [_state_of(r) for r in (await self._run(reads, action))[0]]
                members = [
                    m for m, old, new in zip(members, states, again, strict=True) if old != new
                ]
                if not members:
                    return
        except StorageError:
            if not quietly:
                raise

    # -- checks and messages -------------------------------------------------------------------

    def _member(self, session_id: object) -> bytes:
        """The session id in UTF-8, as the indexes hold it; TypeError for an id that is not a
        str, StorageError for one that is not Unicode text."""
        if type(session_id) is not str:
            raise TypeError(
                f"session_id must be a str, got {type(session_id).__name__}: {quote_id(session_id)}"
            )
        try:
            return session_id.encode()
        except UnicodeEncodeError as exc:
            raise StorageError(
                f"Session id {quote_id(session_id)} cannot be used with {self._url}: it holds "
                f"a lone surrogate (U+{ord(session_id[exc.start]):04X} at position {exc.start}), "
                "which is not Unicode text, so Redis keys cannot name it. Use valid Unicode text"
            ) from None

    def _bound(self, after: str) -> bytes:
        try:
            return after.encode()
        except UnicodeEncodeError:
            raise StorageError(
                f"The listing bound after={quote_id(after)} cannot be used with {self._url}: it "
                "holds a lone surrogate, which is not Unicode text and sorts with no stored id"
            ) from None

    async def _check_missing(self, session_id: str, key: bytes, action: str) -> None:
        """A session read as missing: raise if its key holds something else, or if Redis lost
        its data since this storage connected."""
        replies, _ = await self._run([(b"TYPE", key), (b"GET", self._keys.generation)], action)
        kind, generation = replies
        if isinstance(kind, bytes) and kind != b"none":
            raise self._foreign(action, key, f"a {kind.decode()} that is not a session")
        if generation != self._generation and not isinstance(generation, ResponseError):
            await self._adopt_generation(action)
            raise StorageError(
                f"Could not {action} {self._url}: session {quote_id(session_id)} is missing, "
                "and Redis lost its data since this storage connected (it was flushed, or "
                "restarted without persistence). Sessions stored before that are gone; new ones "
                "can be created. To keep sessions across restarts, turn on Redis's persistence "
                "(appendonly yes)"
            )

    async def _adopt_generation(self, action: str) -> None:
        token = os.urandom(16).hex().encode()
        replies, _ = await self._run(
            [
                (b"SET", self._keys.generation, token, b"NX"),
                (b"GET", self._keys.generation),
            ],
            action,
        )
        self._generation = replies[1]

    async def _refusal(
        self, session: Session, reply: list[Any], key: bytes, again: bool, action: str
    ) -> StorageError:
        """The error for a save the script refused: SessionConflict, or a key not flowcore's."""
        if reply[0] < 0:
            return self._foreign(action, key, f"a {reply[1].decode()}")
        stored = int(reply[1])
        if again:
            return StorageError(
                f"Could not {action} {self._url}: the connection broke during the save, which "
                f"was sent again on a new connection and then found version {stored} stored. "
                "The first one may have been stored all the same: load the session to see its "
                "version"
            )
        if stored == 0:
            if await self._data_lost(action):
                return StorageError(
                    f"Could not {action} {self._url}: session {quote_id(session.id)} is gone, "
                    "and Redis lost its data since this storage connected (it was flushed, or "
                    "restarted without persistence); nothing was saved. To keep sessions across "
                    "restarts, turn on Redis's persistence (appendonly yes)"
                )
            if self._ttl is not None:
                return SessionConflict(
                    f"Session {quote_id(session.id)} was deleted, or expired (ttl), after it was "
                    f"loaded at version {session.version}; nothing was saved"
                )
        return SessionConflict.on_save(session.id, session.version, stored or None)

    async def _data_lost(self, action: str) -> bool:
        generation = await self._one((b"GET", self._keys.generation), action, self._keys.generation)
        if generation == self._generation:
            return False
        await self._adopt_generation(action)
        return True

    def _foreign(self, action: str, key: bytes, what: str) -> StorageError:
        return StorageError(
            f"Could not {action} {self._url}: the key {quote_id(key.decode(errors='replace'))} "
            f"holds {what}, not flowcore's. Another program uses this key: give this storage a "
            f"prefix of its own (prefix=..., now {self._prefix!r}), or remove the key"
        )

    async def _refused(
        self, action: str, reply: ResponseError, key: bytes, *, saving: bool = False
    ) -> StorageError:
        """The StorageError for an error reply of Redis's."""
        if not str(reply).startswith("WRONGTYPE"):
            return self._failure(action, reply, saving=saving)
        what = "a value of another type"
        with contextlib.suppress(StorageError):
            kind = (await self._run([(b"TYPE", key)], action))[0][0]
            if isinstance(kind, bytes):
                what = f"a {kind.decode()}"
        return self._foreign(action, key, what)

    def _failure(self, action: str, exc: BaseException, *, saving: bool = False) -> StorageError:
        text = str(exc).strip().rstrip(".") or "no details"
        message = f"Could not {action} {self._url}: {type(exc).__name__}: {text}"
        for note in (self._hint(exc), self._save_outcome(exc) if saving else None):
            if note:
                message += f". {note}"
        return StorageError(message)

    def _hint(self, exc: BaseException) -> str | None:
        """What the user can do about ``exc``."""
        text = str(exc)
        if self._closed:
            return "The storage was closed meanwhile"
        if isinstance(exc, PoolTimeout):
            return (
                f"All {self._pool_size} connections (pool_size) stayed in use: raise pool_size, "
                "or pool_timeout"
            )
        if isinstance(exc, CommandTimeout):
            return "Redis may be overloaded, or blocked by a slow command or script"
        if isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError)) or (
            text.startswith(("WRONGPASS", "NOAUTH"))
        ):
            return (
                "Check the user name and password in the URL "
                "(redis://user:password@host:port/db; percent-encode special characters)"
            )
        if isinstance(exc, NoPermissionError):
            return (
                "The Redis user lacks a permission flowcore-redis needs: allow it the hash, "
                "sorted-set, GET, SET, TYPE, scripting, TIME and INFO commands on the keys "
                f"{self._prefix}*"
            )
        if isinstance(exc, BusyLoadingError):
            return "Redis is loading its data into memory after a restart: retry in a moment"
        if isinstance(exc, ReadOnlyError):
            return "This Redis is a read-only replica: point the URL at the primary"
        if isinstance(exc, OutOfMemoryError):
            return (
                "Redis reached its maxmemory and refuses writes: free memory, raise maxmemory, "
                "or give sessions a ttl"
            )
        if isinstance(exc, MaxConnectionsError):
            return (
                "The client's connection pool has no connection free: raise its "
                "max_connections, or lower pool_size"
            )
        if _caused_by(exc, ssl.SSLCertVerificationError):
            return (
                "The server's TLS certificate is not trusted here: name the authority that "
                "signed it with ssl_ca_certs=/path/to/ca.pem in the URL (ssl_cert_reqs=none "
                "skips the check, and trusts any server)"
            )
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            timeout = (
                ""
                if self._connect_timeout is None
                else f" (connect_timeout={self._connect_timeout:g}s)"
            )
            return f"Check that the Redis server is running and reachable at this address{timeout}"
        return None

    def _save_outcome(self, exc: BaseException) -> str | None:
        """What became of a save that failed with ``exc``."""
        if isinstance(exc, PoolTimeout):
            return "Nothing was sent, so nothing was stored"
        if isinstance(exc, ResponseError):
            return "Redis refused the save: nothing was stored"
        return (
            "The connection broke during the save, which may have been stored all the same: "
            "load the session to see its version"
        )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` is, or was raised from or while handling, a ``kind``."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _text_of(member: bytes) -> str | None:
    """An index entry as a session id (None for bytes that are not UTF-8: not flowcore's)."""
    try:
        return member.decode()
    except UnicodeDecodeError:
        return None


def _state_of(reply: Reply) -> tuple[bytes, bytes | None] | None:
    """A session's ``(version, wake_at)`` from ``HMGET key v w`` (None: no session there)."""
    if isinstance(reply, ResponseError) or reply[0] is None:
        return None
    return reply[0], reply[1]


def _wake_of(reply: Reply) -> int | None:
    """A session's ``wake_at`` in microseconds from ``HMGET key v w`` (None: not waiting, or
    no session there)."""
    state = _state_of(reply)
    if state is None or state[1] is None:
        return None
    try:
        return int(state[1])
    except ValueError:
        return None


def _make_pool(connection: dict[str, Any], values: Mapping[str, Any], shown: str) -> ConnectionPool:
    """redis-py's connection pool for a checked URL and the storage's options."""
    from redis.asyncio.connection import (
        Connection,
        ConnectionPool,
        SSLConnection,
        UnixDomainSocketConnection,
    )
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    kwargs = dict(connection)
    kind = kwargs.pop("kind")
    connection_class = {
        "tcp": Connection,
        "tls": SSLConnection,
        "unix": UnixDomainSocketConnection,
    }[kind]
    kwargs.update(
        socket_connect_timeout=values["connect_timeout"],
        socket_timeout=None,  # the storage keeps command_timeout itself (Connections)
        # The storage says when a command may be sent again (see Connections.run): redis-py's
        # own retries would resend a save after a broken connection without its knowing.
        retry=Retry(NoBackoff(), 0),
    )
    kwargs.update(values["connection_options"] or {})
    if kwargs.get("decode_responses"):
        raise StorageError(
            f"The connection_options for {shown} set decode_responses: flowcore-redis reads "
            "sessions as bytes; leave it out"
        )
    try:
        connection_class(**kwargs)  # refuse an unknown or bad option now, not at first use
        return ConnectionPool(
            connection_class=connection_class, max_connections=values["pool_size"], **kwargs
        )
    except (TypeError, ValueError) as exc:
        raise StorageError(
            f"Could not open {shown}: redis-py refused the connection options "
            f"({type(exc).__name__}: {exc}); correct or drop them"
        ) from None


def _client_parts(client: Any) -> tuple[ConnectionPool | None, RedisCluster | None]:
    """The connection pool of an application's ``redis.asyncio.Redis``, or the application's
    ``redis.asyncio.RedisCluster`` itself."""
    from redis.asyncio import Redis, RedisCluster

    if isinstance(client, Redis):
        pool = client.connection_pool
        decodes = pool.connection_kwargs.get("decode_responses")
        parts: tuple[ConnectionPool | None, RedisCluster | None] = (pool, None)
    elif isinstance(client, RedisCluster):
        decodes = client.get_connection_kwargs().get("decode_responses")
        parts = (None, client)
    else:
        raise StorageError(
            "client= must be a redis.asyncio.Redis (as redis.asyncio.from_url makes) or a "
            f"redis.asyncio.RedisCluster, got {type(client).__module__}."
            f"{type(client).__qualname__}"
        )
    if decodes:
        raise StorageError(
            "client= decodes responses (decode_responses=True), and flowcore-redis reads "
            "sessions as bytes: give it a client made without decode_responses (the two may "
            "share nothing but the server)"
        )
    return parts


def _url_of_cluster(client: RedisCluster) -> str:
    """Where a cluster client starts, as a URL for messages."""
    nodes = list(client.nodes_manager.startup_nodes.values())  # redis-py 5 to 8 keep these
    if not nodes:
        return "redis://(a Redis Cluster)"
    host = str(nodes[0].host)
    host = f"[{host}]" if ":" in host else host
    return f"redis://{host}:{nodes[0].port} (a Redis Cluster)"


def _url_of(pool: ConnectionPool) -> str:
    """Where a client's pool connects, as a URL for messages (no password)."""
    from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    user = kwargs.get("username")
    at = f"{user}@" if user else ""
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        return f"unix://{at}{kwargs.get('path', '')}" + (f"?db={db}" if db else "")
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    host = str(kwargs.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{at}{host}:{kwargs.get('port', 6379)}/{db}"


RedisSessionStorage.__module__ = "flowcore_redis"  # as reprs, tracebacks and docs name it
