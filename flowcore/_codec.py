"""The session codec: sessions and contexts as msgpack, never pickle.

A hot-path module: plain typed Python, compiled by Cython in the extension build.

Blob layout
-----------
``encode_session`` returns one byte, the format version (:data:`FORMAT_VERSION`, 1), followed
by one msgpack array (the session id and version live beside the blob in storage)::

    [graph_id, current_task_id, status_message, is_completed, history,
     max_chat_messages, data, chat]

``history`` is a list of str, ``data`` the context data (a map, str keys) and ``chat`` a flat
array of three items per message: ``role`` (0 user, 1 assistant, 2 system), ``content`` and
``timestamp`` as integer microseconds since 1970-01-01 UTC.
``encode_context`` (used to snapshot a context for retries) packs
``[max_chat_messages, data, chat]`` with no header.

Values
------
None, bool, float, str, bytes, list and dict, and int in the 64-bit range, are plain msgpack,
packed and unpacked in C without any Python code. The others are msgpack extension types:

====  ==========  ========================================================================
code  type        payload
====  ==========  ========================================================================
1     int         any other int: signed big-endian two's complement
2     tuple       a msgpack array of the items
3     set         a msgpack array of the members
4     frozenset   a msgpack array of the members
5     datetime    int64 wall-clock microseconds since 0001-01-01, then for an aware
                  datetime int64 UTC offset in microseconds (comes back with a fixed-offset
                  ``datetime.timezone`` for the same instant)
6     date        int32 proleptic Gregorian ordinal
7     time        int64 microseconds since midnight, then the offset as for datetime
8     timedelta   int32 days, int32 seconds, int32 microseconds
9     UUID        the 16 bytes
10    Decimal     ``str(value)`` in ASCII (NaN, infinities, sign and exponent kept)
11    registered  a msgpack array ``[name, value]``: the stable name given to
                  ``register_type`` and the encoded value (an enum's value; a dataclass's
                  init fields as a map of name to value; or what ``encode`` returned)
====  ==========  ========================================================================

Only these exact types are accepted: a subclass (of str, int, dict, of a registered type...)
must be registered itself. Each value comes back equal and of the same type. Dict keys may be
any supported hashable value: str, int, float, bool, None, bytes, tuple, frozenset, datetime,
date, time, timedelta, UUID, Decimal and hashable registered types. Limits: lists and dicts
nest at most 1024 levels (msgpack's limit) inside each extension value, and tuples, sets and
registered types at most 32 levels (which keeps the C stack bounded); a container reached
twice is stored twice (it comes back as two copies), and one that contains itself cannot be
stored. ``bytearray`` and ``memoryview`` are written as msgpack bin by msgpack itself and come
back as ``bytes``; ``msgpack.ExtType`` and ``msgpack.Timestamp`` objects must not be stored.
A ``fold`` of 1 and a tzinfo's name are not kept (neither changes equality).

Errors
------
A value that cannot be stored raises :class:`SerializationError` at encode, naming the key
path, e.g. ``context['order']['items'][3]: cannot store object of type lock``. Paths write
dict keys as ``[key]`` (their repr), list and tuple items as ``[i]``, set members as ``{...}``,
dataclass fields as ``.name`` and a dict key itself as ``<key>``. The encode is attempted in C
first; only when it fails does a Python walk look for the path. An unreadable blob raises
:class:`StorageError` naming the session: ``Session 'abc' could not be decoded: <reason>``.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, NoReturn, TypeVar
from uuid import UUID

from msgpack import ExtType, Packer, Timestamp, unpackb

from flowcore._context import Context, restore_context
from flowcore._errors import SerializationError, StorageError, quote_id
from flowcore._session import Session

__all__ = [
    "FORMAT_VERSION",
    "READABLE_FORMAT_VERSIONS",
    "decode_context",
    "decode_session",
    "encode_context",
    "encode_session",
    "register_type",
    "unregister_type",
]

_T = TypeVar("_T")

FORMAT_VERSION = 1
"""The format version ``encode_session`` writes: the first byte of every blob."""

READABLE_FORMAT_VERSIONS = (1,)
"""The format versions ``decode_session`` reads."""

_VERSION_BYTE = bytes((FORMAT_VERSION,))

# Extension type codes (see the module docstring). Never reuse a code for something else.
EXT_BIGINT = 1
EXT_TUPLE = 2
EXT_SET = 3
EXT_FROZENSET = 4
EXT_DATETIME = 5
EXT_DATE = 6
EXT_TIME = 7
EXT_TIMEDELTA = 8
EXT_UUID = 9
EXT_DECIMAL = 10
EXT_REGISTERED = 11

_NEST_LIMIT = 1024
"""msgpack's nesting limit: the C packer fails below this many levels of lists and dicts."""

_MAX_EXT_DEPTH = 32
"""How many tuples, sets and registered values may nest inside each other.

Each level packs (and unpacks) its payload with a new msgpack call, on the C stack; the limit
keeps a deep or crafted structure from exhausting it.
"""

# Packers start with buffers this size and grow as needed. msgpack's default (256 KiB) is
# large enough for glibc to return it to the OS after each call, making every encode pay for
# fresh pages, and most payloads are far smaller.
_BUF_SIZE = 16 * 1024
_NESTED_BUF_SIZE = 256

_VALUE_BUDGET = _NEST_LIMIT - 2  # a context value sits in data (a map) in the record (an array)

_UTC = timezone.utc
_DT_MIN = datetime(1, 1, 1)

_Q = struct.Struct(">q")
_QQ = struct.Struct(">qq")
_I = struct.Struct(">i")
_III = struct.Struct(">iii")


_HINT = "register it with flowcore.codec.register_type or store a supported type"


class _State(threading.local):
    """Per-thread nesting depth of extension values being packed or unpacked."""

    def __init__(self) -> None:
        self.depth = 0


_STATE = _State()


class _Unsupported(TypeError):
    """Raised by ``_default`` for a type the codec does not store; the slow walk says where."""


class _TooDeep(ValueError):
    """Extension values nested more than ``_MAX_EXT_DEPTH`` levels."""


class _DecodeError(ValueError):
    """A blob that is well-formed msgpack but not a valid record."""


# -- the registry -------------------------------------------------------------------------------

_CUSTOM = 0
_ENUM = 1
_DATACLASS = 2


class _Entry:
    """How one registered class is stored."""

    __slots__ = ("cls", "decode", "encode", "fields", "kind", "name")

    def __init__(
        self,
        cls: type[Any],
        name: str,
        kind: int,
        encode: Callable[[Any], Any] | None,
        decode: Callable[[Any], Any] | None,
        fields: tuple[str, ...],
    ) -> None:
        self.cls = cls
        self.name = name
        self.kind = kind
        self.encode = encode
        self.decode = decode
        self.fields = fields


_BY_TYPE: dict[type, _Entry] = {}
_BY_NAME: dict[str, _Entry] = {}
_REGISTRY_LOCK = threading.Lock()

# Types the codec stores itself; register_type refuses them.
_BUILTIN_TYPES: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    str,
    bytes,
    list,
    tuple,
    dict,
    set,
    frozenset,
    datetime,
    date,
    time,
    timedelta,
    UUID,
    Decimal,
)
# Types msgpack packs itself (never reaching _default): registering them would do nothing.
_PACKED_BY_MSGPACK: tuple[type, ...] = (bytearray, memoryview, ExtType, Timestamp)
# What the slow walk accepts without looking inside: every stored type but the containers.
_LEAF_TYPES = frozenset(_BUILTIN_TYPES + _PACKED_BY_MSGPACK) - {list, tuple, dict, set, frozenset}


def _class_name(cls: type[Any]) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def register_type(
    cls: type[_T],
    encode: Callable[[_T], Any] | None = None,
    decode: Callable[[Any], _T] | None = None,
    *,
    name: str | None = None,
) -> type[_T]:
    """Let context values of exactly type ``cls`` be stored; returns ``cls``.

    ``encode(obj)`` returns a storable value (it may hold other supported or registered
    values) and ``decode(value)`` rebuilds the object from it. An enum needs neither (its
    member's value is stored, ``cls(value)`` rebuilds it), nor does a dataclass (its init
    fields are stored by name, ``cls(**fields)`` rebuilds it; frozen ones too). ``name`` is
    the tag written into each blob (default ``"module.QualName"``): keep it stable, since a
    blob naming an unregistered tag cannot be loaded. Registering ``cls`` again replaces its
    entry; a ``name`` already used by another class raises ValueError. Usable as a class
    decorator for enums and dataclasses.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_type takes a class, got {type(cls).__name__}: {cls!r}")
    if cls in _BUILTIN_TYPES or cls in _PACKED_BY_MSGPACK:
        raise ValueError(
            f"{cls.__qualname__} is stored by the codec itself; it cannot be registered"
        )
    if (encode is None) != (decode is None):
        raise TypeError(
            f"register_type({cls.__qualname__}, ...) needs both encode and decode, or neither "
            "for an enum or a dataclass"
        )
    if encode is not None and not callable(encode):
        raise TypeError(f"encode must be callable, got {type(encode).__name__}")
    if decode is not None and not callable(decode):
        raise TypeError(f"decode must be callable, got {type(decode).__name__}")
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
    elif type(name) is not str or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    fields: tuple[str, ...] = ()
    if encode is not None:
        kind = _CUSTOM
    elif issubclass(cls, enum.Enum):
        kind = _ENUM
    elif dataclasses.is_dataclass(cls):
        kind = _DATACLASS
        fields = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    else:
        raise TypeError(
            f"cannot register {_class_name(cls)} without functions: pass "
            "encode=<function turning an object into a storable value> and "
            "decode=<function rebuilding the object from that value>, "
            "or make it an enum or a dataclass"
        )
    entry = _Entry(cls, name, kind, encode, decode, fields)
    with _REGISTRY_LOCK:
        other = _BY_NAME.get(name)
        if other is not None and other.cls is not cls:
            raise ValueError(
                f"cannot register {_class_name(cls)} as {name!r}: that name is already used by "
                f"{_class_name(other.cls)}; pass another name= (or unregister_type the other)"
            )
        old = _BY_TYPE.get(cls)
        if old is not None:
            del _BY_NAME[old.name]
        _BY_TYPE[cls] = entry
        _BY_NAME[name] = entry
    return cls


def unregister_type(cls: type[Any]) -> bool:
    """Forget ``cls``; True if it was registered. Blobs that hold it can no longer be loaded."""
    with _REGISTRY_LOCK:
        entry = _BY_TYPE.pop(cls, None)
        if entry is None:
            return False
        del _BY_NAME[entry.name]
        return True


# -- encoding -----------------------------------------------------------------------------------


_ext = ExtType._make  # ExtType without the checks of ExtType(): our codes and bytes are valid
# Packer itself, typed loosely: msgpack-types does not declare buf_size (both Packers take it).
_packer: Callable[..., Packer] = Packer


def _pack_nested(code: int, payload: object) -> ExtType:
    state = _STATE
    depth = state.depth
    if depth >= _MAX_EXT_DEPTH:
        raise _TooDeep("nested too deeply")
    state.depth = depth + 1
    try:
        packer = _packer(default=_default, strict_types=True, buf_size=_NESTED_BUF_SIZE)
        return _ext((code, packer.pack(payload)))
    finally:
        state.depth = depth


def _offset_us(offset: timedelta) -> int:
    return (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds


def _default(obj: Any) -> ExtType:
    """msgpack's hook for every value that is not plain msgpack (strict types)."""
    t = type(obj)
    if t is datetime:
        wall = (
            (obj.toordinal() - 1) * 86_400 + obj.hour * 3_600 + obj.minute * 60 + obj.second
        ) * 1_000_000 + obj.microsecond
        offset = obj.utcoffset()
        if offset is None:
            return _ext((EXT_DATETIME, _Q.pack(wall)))
        return _ext((EXT_DATETIME, _QQ.pack(wall, _offset_us(offset))))
    if t is tuple:
        return _pack_nested(EXT_TUPLE, list(obj))
    if t is int:
        return _ext((EXT_BIGINT, obj.to_bytes((obj.bit_length() + 8) >> 3, "big", signed=True)))
    if t is date:
        return _ext((EXT_DATE, _I.pack(obj.toordinal())))
    if t is UUID:
        return _ext((EXT_UUID, obj.bytes))
    if t is Decimal:
        return _ext((EXT_DECIMAL, str(obj).encode("ascii")))
    if t is set:
        return _pack_nested(EXT_SET, list(obj))
    if t is frozenset:
        return _pack_nested(EXT_FROZENSET, list(obj))
    if t is timedelta:
        return _ext((EXT_TIMEDELTA, _III.pack(obj.days, obj.seconds, obj.microseconds)))
    if t is time:
        since_midnight = (
            (obj.hour * 60 + obj.minute) * 60 + obj.second
        ) * 1_000_000 + obj.microsecond
        offset = obj.utcoffset()
        if offset is None:
            return _ext((EXT_TIME, _Q.pack(since_midnight)))
        return _ext((EXT_TIME, _QQ.pack(since_midnight, _offset_us(offset))))
    entry = _BY_TYPE.get(t)
    if entry is None:
        raise _Unsupported(f"cannot store object of type {t.__qualname__}")
    kind = entry.kind
    if kind == _ENUM:
        value = obj.value
    elif kind == _DATACLASS:
        value = {name: getattr(obj, name) for name in entry.fields}
    else:
        value = entry.encode(obj)  # type: ignore[misc]
    return _pack_nested(EXT_REGISTERED, [entry.name, value])


def _pack_record(record: list[Any], data: dict[str, Any]) -> bytes:
    """``record`` packed; a failure is reported by the path of the value in ``data`` at fault."""
    packer = _packer(default=_default, strict_types=True, buf_size=_BUF_SIZE)
    try:
        return packer.pack(record)
    except MemoryError:
        raise
    except Exception as exc:
        _raise_serialization_error(data, exc)


def _all_str(items: list[Any]) -> bool:
    """Whether every item of ``items`` is a str (exactly)."""
    for item in items:  # noqa: SIM110  (a plain loop compiles to C; all() of a generator does not)
        if type(item) is not str:
            return False
    return True


def _bad_field(field: str, expected: str, value: object) -> SerializationError:
    return SerializationError(
        f"session field {field} must be {expected}, got {type(value).__name__}: {quote_id(value)}"
    )


def encode_session(session: Session) -> bytes:
    """The blob storing ``session`` (all but its id and version, which live beside it).

    Raises SerializationError naming the key path when a context value cannot be stored.
    """
    graph_id = session.graph_id
    current_task_id = session.current_task_id
    status_message = session.status_message
    is_completed = session.is_completed
    history = session.history
    if type(graph_id) is not str:
        raise _bad_field("graph_id", "a str", graph_id)
    if type(current_task_id) is not str:
        raise _bad_field("current_task_id", "a str", current_task_id)
    if status_message is not None and type(status_message) is not str:
        raise _bad_field("status_message", "None or a str", status_message)
    if type(is_completed) is not bool:
        raise _bad_field("is_completed", "a bool", is_completed)
    if type(history) is not list or not _all_str(history):
        raise _bad_field("history", "a list of str", history)
    ctx = session.context
    data = ctx._data
    record = [
        graph_id,
        current_task_id,
        status_message,
        is_completed,
        history,
        ctx._max_chat_messages,
        data,
        ctx._chat,
    ]
    return _VERSION_BYTE + _pack_record(record, data)


def encode_context(ctx: Context) -> bytes:
    """A snapshot of ``ctx`` (data, chat and cap) for :func:`decode_context`."""
    data = ctx._data
    return _pack_record([ctx._max_chat_messages, data, ctx._chat], data)


# -- finding what failed (the slow path) --------------------------------------------------------

_EXIT: Any = object()  # a marker on the walk's stack: leave the container whose id follows
_Path = tuple[Any, str]  # (parent path or None, text of this step)
_ROOT: _Path = (None, "context")


def _format_path(path: _Path) -> str:
    parts: list[str] = []
    node: Any = path
    while node is not None:
        parts.append(node[1])
        node = node[0]
    parts.reverse()
    if len(parts) > 40:
        parts = [*parts[:12], "...", *parts[-12:]]
    return "".join(parts)


def _unsupported_message(t: type[Any]) -> str:
    name = t.__qualname__
    if issubclass(t, enum.Enum) or dataclasses.is_dataclass(t):
        kind = "an enum" if issubclass(t, enum.Enum) else "a dataclass"
        return (
            f"cannot store object of type {name}; it is {kind}: register it with "
            f"flowcore.codec.register_type({name})"
        )
    for base in (*_BY_TYPE, *_BUILTIN_TYPES):
        if issubclass(t, base):
            return (
                f"cannot store object of type {name}; it is a subclass of "
                f"{base.__qualname__}, and only exact types are stored: register {name} "
                f"itself with flowcore.codec.register_type or convert it to {base.__qualname__}"
            )
    return f"cannot store object of type {name}; {_HINT}"


def _find_problem(data: dict[str, Any]) -> tuple[str, BaseException | None] | None:
    """Walk ``data`` as the codec packs it; the first problem as (message, cause), or None."""
    stack: list[tuple[Any, Any, int, int]] = [
        (value, (_ROOT, f"[{key!r}]"), _VALUE_BUDGET, 0) for key, value in data.items()
    ]
    stack.reverse()
    active: dict[int, object] = {}  # containers on the current branch (kept alive by this)
    while stack:
        obj, path, budget, ext_depth = stack.pop()
        if obj is _EXIT:
            del active[path]
            continue
        if budget < 0:
            message = (
                f"{_format_path(path)}: nested too deeply (more than {_NEST_LIMIT} levels of "
                "lists and dicts) to be stored"
            )
            return message, None
        t = type(obj)
        if t in _LEAF_TYPES:
            continue
        entry = None
        if t is not list and t is not dict:
            if t is not tuple and t is not set and t is not frozenset:
                entry = _BY_TYPE.get(t)
                if entry is None:
                    return f"{_format_path(path)}: {_unsupported_message(t)}", None
            if ext_depth >= _MAX_EXT_DEPTH:
                message = (
                    f"{_format_path(path)}: nested too deeply (more than {_MAX_EXT_DEPTH} "
                    "levels of tuples, sets and registered types) to be stored"
                )
                return message, None
        key = id(obj)
        if key in active:
            message = (
                f"{_format_path(path)}: cyclic structure (a container that contains itself) "
                "cannot be stored; break the cycle, e.g. store ids instead of the objects"
            )
            return message, None
        active[key] = obj
        stack.append((_EXIT, key, 0, 0))
        children: list[tuple[Any, Any, int, int]] = []
        if t is list:
            children = [
                (item, (path, f"[{i}]"), budget - 1, ext_depth) for i, item in enumerate(obj)
            ]
        elif t is dict:
            for k, v in obj.items():
                children.append((k, (path, "<key>"), budget - 1, ext_depth))
                children.append((v, (path, f"[{k!r}]"), budget - 1, ext_depth))
        elif t is tuple:
            children = [
                (item, (path, f"[{i}]"), _NEST_LIMIT - 1, ext_depth + 1)
                for i, item in enumerate(obj)
            ]
        elif t is set or t is frozenset:
            children = [(item, (path, "{...}"), _NEST_LIMIT - 1, ext_depth + 1) for item in obj]
        elif entry is not None:
            try:
                if entry.kind == _ENUM:
                    children = [(obj.value, path, _NEST_LIMIT - 1, ext_depth + 1)]
                elif entry.kind == _DATACLASS:
                    children = [
                        (getattr(obj, name), (path, f".{name}"), _NEST_LIMIT - 2, ext_depth + 1)
                        for name in entry.fields
                    ]
                else:
                    value = entry.encode(obj)  # type: ignore[misc]
                    children = [(value, path, _NEST_LIMIT - 1, ext_depth + 1)]
            except Exception as exc:
                message = (
                    f"{_format_path(path)}: the encode function registered for "
                    f"{entry.name!r} raised {type(exc).__name__}: {exc}"
                )
                return message, exc
        children.reverse()
        stack.extend(children)
    return None


def _raise_serialization_error(data: dict[str, Any], exc: Exception) -> NoReturn:
    try:
        found = _find_problem(data)
    except Exception as walk_error:  # a value whose methods misbehave twice; say what we know
        raise SerializationError(
            f"context could not be stored: {type(exc).__name__}: {exc}"
        ) from walk_error
    if found is None:
        raise SerializationError(
            f"context could not be stored: {type(exc).__name__}: {exc}"
        ) from exc
    message, cause = found
    raise SerializationError(message) from cause


# -- decoding -----------------------------------------------------------------------------------

_TZ_CACHE: dict[int, tuple[tzinfo, datetime]] = {0: (_UTC, datetime(1, 1, 1, tzinfo=_UTC))}


def _fixed_offset(offset_us: int) -> tuple[tzinfo, datetime]:
    """The fixed-offset timezone for ``offset_us`` and 0001-01-01 in it (cached)."""
    cached = _TZ_CACHE.get(offset_us)
    if cached is not None:
        return cached
    tz = timezone(timedelta(microseconds=offset_us))
    pair = (tz, datetime(1, 1, 1, tzinfo=tz))
    if len(_TZ_CACHE) < 512:  # a crafted blob must not grow it without bound
        _TZ_CACHE[offset_us] = pair
    return pair


def _unpack_nested(data: bytes) -> list[Any]:
    state = _STATE
    depth = state.depth
    if depth >= _MAX_EXT_DEPTH:
        raise _DecodeError(f"values nested more than {_MAX_EXT_DEPTH} levels deep")
    state.depth = depth + 1
    try:
        value = unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
    finally:
        state.depth = depth
    if type(value) is not list:
        raise _DecodeError("an extension payload is not an array")
    return value


def _decode_registered(data: bytes) -> Any:
    payload = _unpack_nested(data)
    if len(payload) != 2 or type(payload[0]) is not str:
        raise _DecodeError("a registered value is not [name, value]")
    name, value = payload
    entry = _BY_NAME.get(name)
    if entry is None:
        raise _DecodeError(
            f"the type {name!r} is not registered; register it with "
            "flowcore.codec.register_type (under that name) before loading"
        )
    try:
        kind = entry.kind
        if kind == _ENUM:
            return entry.cls(value)
        if kind == _DATACLASS:
            if type(value) is not dict:
                raise TypeError(f"expected a map of fields, got {type(value).__name__}")
            return entry.cls(**value)
        return entry.decode(value)  # type: ignore[misc]
    except Exception as exc:
        raise _DecodeError(
            f"cannot rebuild {name!r} from its stored value: {type(exc).__name__}: {exc}"
        ) from exc


def _ext_hook(code: int, data: bytes) -> Any:
    """msgpack's hook for every extension value."""
    if code == EXT_DATETIME:
        if len(data) == 8:
            return _DT_MIN + timedelta(0, 0, _Q.unpack(data)[0])
        wall, offset = _QQ.unpack(data)
        return _fixed_offset(offset)[1] + timedelta(0, 0, wall)
    if code == EXT_TUPLE:
        return tuple(_unpack_nested(data))
    if code == EXT_BIGINT:
        if not data:
            raise _DecodeError("an empty int payload")
        return int.from_bytes(data, "big", signed=True)
    if code == EXT_DATE:
        return date.fromordinal(_I.unpack(data)[0])
    if code == EXT_UUID:
        return UUID(bytes=data)
    if code == EXT_DECIMAL:
        return Decimal(data.decode("ascii"))
    if code == EXT_SET:
        return set(_unpack_nested(data))
    if code == EXT_FROZENSET:
        return frozenset(_unpack_nested(data))
    if code == EXT_TIMEDELTA:
        days, seconds, microseconds = _III.unpack(data)
        return timedelta(days, seconds, microseconds)
    if code == EXT_TIME:
        if len(data) == 8:
            since_midnight = _Q.unpack(data)[0]
            tz = None
        else:
            since_midnight, offset = _QQ.unpack(data)
            tz = _fixed_offset(offset)[0]
        hours, rest = divmod(since_midnight, 3_600_000_000)
        minutes, rest = divmod(rest, 60_000_000)
        seconds, microseconds = divmod(rest, 1_000_000)
        return time(hours, minutes, seconds, microseconds, tz)
    if code == EXT_REGISTERED:
        return _decode_registered(data)
    raise _DecodeError(f"unknown extension type code {code}")


def _unpack(blob: object) -> Any:
    """The record of a session blob, after the format version byte."""
    if type(blob) is not bytes:
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise _DecodeError(f"expected bytes, got {type(blob).__name__}")
        blob = bytes(blob)
    if not blob:
        raise _DecodeError("the blob is empty")
    found = blob[0]
    if found not in READABLE_FORMAT_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
        raise _DecodeError(
            f"it was stored in format version {found}, and this flowcore reads format "
            f"version {readable} only; load it with a flowcore that reads version {found}"
        )
    return unpackb(memoryview(blob)[1:], ext_hook=_ext_hook, strict_map_key=False)


def _build_context(max_chat_messages: Any, data: Any, chat: Any) -> Context:
    if type(data) is not dict:
        raise _DecodeError("the context data is not a map")
    for key in data:
        if type(key) is not str:
            raise _DecodeError(f"a context key is not a str: {quote_id(key)}")
    if type(chat) is not list or len(chat) % 3:
        raise _DecodeError("the chat is not an array of (role, content, timestamp) triples")
    chat_list = chat
    n = len(chat_list)
    for i in range(0, n, 3):
        code = chat_list[i]
        # The context keeps the chat flat, as stored: check each triple, build nothing.
        if type(code) is not int or not 0 <= code <= 2:
            raise _DecodeError(f"unknown chat role code {code!r}")
        if type(chat_list[i + 1]) is not str or type(chat_list[i + 2]) is not int:
            raise _DecodeError("a chat message has no str content or no int timestamp")
    ctx = restore_context(data, chat_list, max_chat_messages)  # checks the cap
    if max_chat_messages is not None and n > 3 * max_chat_messages:
        del chat_list[: n - 3 * max_chat_messages]
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _DecodeError):
        return str(exc)
    return f"malformed or truncated blob ({type(exc).__name__}: {exc})"


def decode_session(blob: object, *, session_id: str, version: int) -> Session:
    """The session stored as ``blob`` under ``session_id`` at ``version``.

    Raises StorageError naming the session for a blob it cannot read: another format version,
    malformed or truncated data, wrong types, or a registered-type name that is not registered.
    """
    try:
        record = _unpack(blob)
        if type(record) is not list or len(record) != 8:
            raise _DecodeError("the record is not an array of 8 fields")
        graph_id, current_task_id, status_message, is_completed, history = record[:5]
        if type(graph_id) is not str or type(current_task_id) is not str:
            raise _DecodeError("graph_id or current_task_id is not a str")
        if status_message is not None and type(status_message) is not str:
            raise _DecodeError("status_message is not a str")
        if type(is_completed) is not bool:
            raise _DecodeError("is_completed is not a bool")
        if type(history) is not list or not _all_str(history):
            raise _DecodeError("history is not an array of str")
        context = _build_context(record[5], record[6], record[7])
    except MemoryError:
        raise
    except Exception as exc:
        raise StorageError(
            f"Session {quote_id(session_id)} could not be decoded: {_reason(exc)}"
        ) from exc
    return Session(
        session_id,
        graph_id,
        current_task_id,
        context,
        status_message=status_message,
        version=version,
        is_completed=is_completed,
        history=history,
    )


def decode_context(blob: bytes) -> Context:
    """The Context snapshotted by :func:`encode_context`."""
    try:
        record = unpackb(blob, ext_hook=_ext_hook, strict_map_key=False)
        if type(record) is not list or len(record) != 3:
            raise _DecodeError("the snapshot is not an array of 3 fields")
        return _build_context(record[0], record[1], record[2])
    except MemoryError:
        raise
    except Exception as exc:
        raise StorageError(f"Context snapshot could not be decoded: {_reason(exc)}") from exc
