"""The session codec: sessions and contexts as msgpack, never pickle.

A hot-path module: plain typed Python, compiled by Cython in the extension build.

Blob layout
-----------
``encode_session`` returns one byte, the format version (:data:`FORMAT_VERSION`, 1), followed
by one msgpack array (the session id and version live beside the blob in storage)::

    [graph_id, current_task_id, status_message, is_completed, history,
     max_chat_messages, data, chat]

A session with a timer or recorded request ids has a ninth item, a map of the extra fields it
has: ``"wake_at"`` (integer microseconds since 1970-01-01 UTC), ``"requests"`` (the
recorded results of its last request ids, see ``flowcore._requests``) and ``"graph_version"``
(the version of the graph it was saved under, when not 1). A session with none of them is
stored in exactly eight, and reads as graph version 1. A map key this flowcore does not know
is refused at load by name, rather than dropped by the next save.

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
date, time, timedelta, UUID, Decimal and hashable registered types. A container reached twice
is stored twice (it comes back as two copies), and one that contains itself cannot be stored.
``bytearray`` and ``memoryview`` are written as msgpack bin by msgpack itself and come back as
``bytes``. A ``fold`` of 1 and a tzinfo's name are not kept (neither changes equality).

Limits
------
No value can crash the process or take time out of proportion to its size, at save or load:

- Containers nest at most :data:`MAX_DEPTH` (256) levels, every kind counting together (list,
  dict, tuple, set, frozenset, registered value). Packing never recurses through Python: a
  scan checks the values first, without recursion, then the tuples, sets and registered values
  are packed inside out, each finding what it holds already packed. Unpacking never nests
  msgpack's unpacker (each has a large stack of its own on the C stack): the extension hook
  keeps a tuple's payload, and the values are built level by level afterwards.
- More than 32 members of one set or keys of one dict that share a hash are refused (Python
  builds such a set in time quadratic in their number, and ints, tuples or Decimals can be
  chosen to collide). Maps are first unpacked with string keys only (their hashes are salted).
- One context holds at most 10,000,000 values, a container stored in several places counting
  each time (``x = [x, x]`` repeated would otherwise stand for billions).
- ``msgpack.ExtType`` and ``msgpack.Timestamp`` are msgpack's own values, not context values:
  refused at save (they would come back as other types), and a blob holding a Timestamp is
  refused at load. So is a chat timestamp outside the years 1 to 9999.

Errors
------
A value that cannot be stored raises :class:`SerializationError` at encode, naming the key
path, e.g. ``context['order']['items'][3]: cannot store object of type lock``. Paths write
dict keys as ``[key]`` (their repr), list and tuple items as ``[i]``, set members as ``{...}``,
dataclass fields as ``.name`` and a dict key itself as ``<key>``; a str that is not valid
Unicode (a lone surrogate) is named by its path too. The scan and the encode run without
paths; only when one fails does a slower walk look for the path. An unreadable blob raises
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
from flowcore._requests import check_requests
from flowcore._session import Session
from flowcore._values import from_utc_micros, utc_micros

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
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

MAX_DEPTH = 256
"""How deep containers may nest in a context value: every kind counts, together.

The value stored under a context key is level 1; each list, dict, tuple, set, frozenset or
registered value inside another adds one level. msgpack recurses on the C stack once per list
or dict level, and Python reading a value (``==``, ``repr``, ``json``) once per level of any
kind: the bound keeps every one of them far from its limit.
"""

_MAX_SHARING_A_HASH = 32
"""How many members of one set or keys of one dict may share a hash.

Python builds a set or dict in time quadratic in the members that share a hash; ints, tuples,
Decimals and other values that are not strings can be chosen to collide, so a blob of a few
hundred KB could take seconds to load. Real data has a handful at most.
"""

_MAX_VALUES = 10_000_000
"""How many values one context may hold (a container stored in several places counts each time).

A structure that shares its containers (``x = [x, x]``, repeated) stands for exponentially many
values in the blob: it is refused before packing, not packed until memory runs out.
"""


# Packers start with buffers this size and grow as needed. msgpack's default (256 KiB) is
# large enough for glibc to return it to the OS after each call, making every encode pay for
# fresh pages, and most payloads are far smaller.
_BUF_SIZE = 16 * 1024
_NESTED_BUF_SIZE = 256

_UTC = timezone.utc
_DT_MIN = datetime(1, 1, 1)

_Q = struct.Struct(">q")
_QQ = struct.Struct(">qq")
_I = struct.Struct(">i")
_III = struct.Struct(">iii")


_HINT = "register it with flowcore.codec.register_type or store a supported type"


class _State(threading.local):
    """Per thread: the packed tuples, sets and registered values of the context being
    packed, by id (what ``_default`` hands msgpack for them)."""

    def __init__(self) -> None:
        self.nested: dict[int, ExtType] | None = None


_STATE = _State()


class _Unsupported(TypeError):
    """Raised by ``_default`` for a type the codec does not store; the slow walk says where."""


class _Refused(ValueError):
    """The scan before packing found a value it cannot pack as it is; the slow walk says why."""


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
# ExtType and Timestamp are msgpack's own values: they would come back as other types.
_PACKED_BY_MSGPACK: tuple[type, ...] = (bytearray, memoryview, ExtType, Timestamp)
_MSGPACK_VALUES = (ExtType, Timestamp)
# What the walks accept without looking inside: every stored type but the containers.
_LEAF_TYPES = frozenset((*_BUILTIN_TYPES, bytearray, memoryview)) - {
    list,
    tuple,
    dict,
    set,
    frozenset,
}


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
    if t is int:
        return _ext((EXT_BIGINT, obj.to_bytes((obj.bit_length() + 8) >> 3, "big", signed=True)))
    if t is date:
        return _ext((EXT_DATE, _I.pack(obj.toordinal())))
    if t is UUID:
        return _ext((EXT_UUID, obj.bytes))
    if t is Decimal:
        return _ext((EXT_DECIMAL, str(obj).encode("ascii")))
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
    # A tuple, set, frozenset or registered value: packed before, inside out, by _pack_nested.
    nested = _STATE.nested
    if nested is not None:
        packed = nested.get(id(obj))
        if packed is not None:
            return packed
    raise _Unsupported(f"cannot store object of type {t.__qualname__}")


def _encoded_value(entry: _Entry, obj: Any) -> Any:
    """What registered ``obj`` is stored as: its enum value, its fields, or encode(obj)."""
    kind = entry.kind
    if kind == _ENUM:
        return obj.value
    if kind == _DATACLASS:
        return {name: getattr(obj, name) for name in entry.fields}
    return entry.encode(obj)  # type: ignore[misc]


def _crowded(members: Any) -> bool:
    """Whether more than ``_MAX_SHARING_A_HASH`` of ``members`` share one hash."""
    if len(members) <= _MAX_SHARING_A_HASH:
        return False
    hashes = [hash(member) for member in members]
    if len(set(hashes)) == len(hashes):  # the common case: no two share a hash
        return False
    counts: dict[int, int] = {}
    for h in hashes:
        n = counts.get(h, 0) + 1
        if n > _MAX_SHARING_A_HASH:
            return True
        counts[h] = n
    return False


def _scan(data: dict[str, Any]) -> list[Any] | None:
    """Check every value of ``data`` before it is packed, without recursion.

    Returns the tuples, sets, frozensets and registered values found (outside in), each as
    ``(value, extension code, payload)``, or None when there is none. Raises _Refused when a
    value cannot be packed as it is (too deep, too many values, a type that is not stored, a
    set whose members share a hash); the slow walk then says what and where. msgpack packs
    its own ExtType and Timestamp without asking: the scan rules them out first.
    """
    nested: list[Any] | None = None
    leaf_types = _LEAF_TYPES
    max_depth = MAX_DEPTH  # a C int when compiled
    budget = _MAX_VALUES - len(data)
    # Level by level: the lists of values whose containers are at level ``depth`` (a dict's
    # values are copied into a list, which compiles to a fast loop).
    level: list[Any] = [list(data.values())]
    depth = 1
    while level:
        below: list[Any] = []
        for items in level:
            for obj in items:
                t = type(obj)
                # the commonest types first: one comparison each when compiled
                if t is str or t is int:
                    continue
                if t is list:
                    children = obj
                elif t in leaf_types:
                    continue
                elif t is dict:
                    if not _str_keys(obj):
                        if _crowded(obj):
                            raise _Refused
                        below.append(list(obj))
                        budget -= len(obj)
                    children = list(obj.values())
                else:
                    if t is tuple:
                        code = EXT_TUPLE
                        payload: Any = list(obj)
                        children = payload
                    elif t is set or t is frozenset:
                        if _crowded(obj):
                            raise _Refused
                        code = EXT_SET if t is set else EXT_FROZENSET
                        payload = list(obj)
                        children = payload
                    else:
                        entry = _BY_TYPE.get(t)
                        if entry is None:
                            raise _Refused
                        code = EXT_REGISTERED
                        value = _encoded_value(entry, obj)  # once per value, whatever it does
                        payload = [entry.name, value]
                        fields = entry.kind == _DATACLASS
                        children = list(value.values()) if fields else payload[1:]
                    if nested is None:
                        nested = []
                    nested.append((obj, code, payload))
                if depth > max_depth:
                    raise _Refused
                budget -= len(children)
                if budget < 0:  # said without a path: finding one would take as long
                    raise _Refused(_TOO_MANY)
                below.append(children)
        level = below
        depth += 1
    return nested


def _pack_nested(nested: list[Any]) -> dict[int, ExtType]:
    """Pack the tuples, sets and registered values the scan found, inside out, so that
    packing never recurses through ``_default``: each payload finds the values inside it
    already packed. Keyed by id; ``nested`` keeps the values (and payloads) alive."""
    packed: dict[int, ExtType] = {}
    _STATE.nested = packed
    packer = _packer(default=_default, strict_types=True, buf_size=_NESTED_BUF_SIZE)
    for obj, code, payload in reversed(nested):
        key = id(obj)
        if key not in packed:  # a value stored in several places is packed once
            packed[key] = _ext((code, packer.pack(payload)))
    return packed


def _pack_record(record: list[Any], ctx: Context) -> bytes:
    """``record`` packed; a failure is reported by the path of the value in ``ctx`` at fault."""
    try:
        nested = _scan(ctx._data)
    except MemoryError:
        raise
    except Exception as exc:  # _Refused, or a value whose hash or encode function failed
        _raise_serialization_error(record, ctx, exc)
    state = _STATE
    outer = state.nested
    try:
        if nested is not None:
            _pack_nested(nested)
        packer = _packer(default=_default, strict_types=True, buf_size=_BUF_SIZE)
        return packer.pack(record)
    except MemoryError:
        raise
    except Exception as exc:
        _raise_serialization_error(record, ctx, exc)
    finally:
        state.nested = outer


def _all_str(items: list[Any]) -> bool:
    """Whether every item of ``items`` is a str (exactly)."""
    for item in items:  # noqa: SIM110  (a plain loop compiles to C; all() of a generator does not)
        if type(item) is not str:
            return False
    return True


def _str_keys(mapping: dict[Any, Any]) -> bool:
    """Whether every key of ``mapping`` is a str (exactly)."""
    for key in mapping:  # noqa: SIM110  (as in _all_str)
        if type(key) is not str:
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
    wake_at = session.wake_at
    requests = session._requests
    graph_version = session.graph_version
    if wake_at is not None or requests or (graph_version is not None and graph_version != 1):
        extras: dict[str, Any] = {}
        if wake_at is not None:
            extras["wake_at"] = _wake_at_us(wake_at)
        if requests:
            extras["requests"] = requests
        if graph_version is not None and graph_version != 1:
            if type(graph_version) is not int or graph_version < 1:
                raise _bad_field("graph_version", "None or an int >= 1", graph_version)
            extras["graph_version"] = graph_version
        record.append(extras)
    blob = _VERSION_BYTE + _pack_record(record, ctx)
    session._stored_size = len(blob)
    return blob


def _wake_at_us(wake_at: Any) -> int:
    if type(wake_at) is not datetime or wake_at.utcoffset() is None:
        raise _bad_field("wake_at", "None or an aware datetime", wake_at)
    return utc_micros(wake_at)


def _read_extras(extras: Any, session: Session) -> None:
    """Set the extra fields of a record's ninth item on ``session``."""
    if type(extras) is not dict:
        raise _DecodeError("the extra fields are not a map")
    for key, value in extras.items():
        if key == "wake_at":
            if type(value) is not int:
                raise _DecodeError("wake_at is not an int")
            session.wake_at = from_utc_micros(value)
        elif key == "requests":
            session._requests = check_requests(value)
        elif key == "graph_version":
            if type(value) is not int or value < 2:
                raise _DecodeError("graph_version is not an int above 1")
            session.graph_version = value
        else:
            raise _DecodeError(
                f"it has a field this flowcore does not know, {quote_id(key)}: load it with the "
                "flowcore that stored it, or a newer one"
            )


def encode_context(ctx: Context) -> bytes:
    """A snapshot of ``ctx`` (data, chat and cap) for :func:`decode_context`."""
    return _pack_record([ctx._max_chat_messages, ctx._data, ctx._chat], ctx)


# -- finding what failed (the slow path) --------------------------------------------------------

_EXIT: Any = object()  # a marker on the walk's stack: leave the container whose id follows
_CONTAINER_TYPES = frozenset((list, tuple, dict, set, frozenset))
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
    if t in _MSGPACK_VALUES:
        return (
            f"cannot store msgpack.{name}: it is msgpack's own value, not a context value (it "
            "would come back as another type); store its data itself, e.g. bytes or a datetime"
        )
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


def _bad_text(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"a str that is not valid Unicode text (a lone surrogate {text[exc.start]!r} at "
            f"index {exc.start}) cannot be stored as UTF-8; decode its bytes properly, e.g. "
            "with errors='replace'"
        )
    return None


_TOO_DEEP = (
    f"nested too deeply: more than {MAX_DEPTH} levels of containers (lists, dicts, tuples, "
    "sets and registered values count together) cannot be stored; flatten it, or store the "
    "inner part under a key of its own"
)
_TOO_MANY = (
    f"more than {_MAX_VALUES:,} values in one context (a container stored in several places "
    "counts each time): store less, or keep large data outside the session and store its id"
)


def _crowd_message(what: str) -> str:
    return (
        f"more than {_MAX_SHARING_A_HASH} {what} share one hash, which would make loading take "
        "time quadratic in their number; store them as a list instead"
    )


def _children(obj: Any, t: type[Any], path: _Path, entry: _Entry | None) -> list[tuple[Any, _Path]]:
    """The values inside container ``obj``, each with its path; raises _Refused with a
    message when the container itself cannot be stored."""
    if t is list or t is tuple:
        return [(item, (path, f"[{i}]")) for i, item in enumerate(obj)]
    if t is dict:
        if _crowded(obj):
            raise _Refused(_crowd_message("keys of this dict"))
        children: list[tuple[Any, _Path]] = []
        for k, v in obj.items():
            children.append((k, (path, "<key>")))
            children.append((v, (path, f"[{quote_id(k)}]")))
        return children
    if t is set or t is frozenset:
        if _crowded(obj):
            raise _Refused(_crowd_message(f"members of this {t.__name__}"))
        return [(item, (path, "{...}")) for item in obj]
    assert entry is not None
    try:
        value = _encoded_value(entry, obj)
    except Exception as exc:
        raise _Refused(
            f"the encode function registered for {entry.name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    if entry.kind == _DATACLASS:
        return [(v, (path, f".{k}")) for k, v in value.items()]
    return [(value, path)]


def _find_problem(data: dict[str, Any]) -> tuple[str, BaseException | None] | None:
    """Walk ``data`` as the scan does, with paths; the first problem as (message, cause)."""
    stack: list[tuple[Any, Any, int]] = [
        (value, (_ROOT, f"[{quote_id(key)}]"), 1) for key, value in data.items()
    ]
    stack.reverse()
    budget = _MAX_VALUES - len(data)
    active: dict[int, object] = {}  # containers on the current branch (kept alive by this)
    while stack:
        obj, path, depth = stack.pop()
        if obj is _EXIT:
            del active[path]
            continue
        t = type(obj)
        if t is str:
            bad = _bad_text(obj)
            if bad is not None:
                return f"{_format_path(path)}: {bad}", None
            continue
        if t in _LEAF_TYPES:
            continue
        entry = None
        if t not in _CONTAINER_TYPES:
            entry = _BY_TYPE.get(t)
            if entry is None:
                return f"{_format_path(path)}: {_unsupported_message(t)}", None
        key = id(obj)
        if key in active:
            message = (
                f"{_format_path(path)}: cyclic structure (a container that contains itself) "
                "cannot be stored; break the cycle, e.g. store ids instead of the objects"
            )
            return message, None
        if depth > MAX_DEPTH:
            return f"{_format_path(path)}: {_TOO_DEEP}", None
        try:
            children = _children(obj, t, path, entry)
        except _Refused as refused:
            return f"{_format_path(path)}: {refused}", refused.__cause__
        except Exception as exc:  # an unhashable member, a __hash__ that fails
            return f"{_format_path(path)}: {type(exc).__name__}: {exc}", exc
        budget -= len(children)
        if budget < 0:
            return f"{_format_path(path)}: {_TOO_MANY}", None
        active[key] = obj
        stack.append((_EXIT, key, 0))
        stack.extend((child, child_path, depth + 1) for child, child_path in reversed(children))
    return None


def _field_problem(record: list[Any], ctx: Context) -> str | None:
    """A problem outside the context data: text of a session field or of a chat message."""
    chat = ctx._chat
    for i in range(1, len(chat), 3):
        bad = _bad_text(chat[i]) if type(chat[i]) is str else None
        if bad is not None:
            return f"chat message {i // 3}: {bad}"
    if len(record) == 8:  # a whole session, not a context snapshot
        names = ("graph_id", "current_task_id", "status_message")
        for name, value in zip(names, record[:3], strict=True):
            bad = _bad_text(value) if type(value) is str else None
            if bad is not None:
                return f"session field {name}: {bad}"
        for i, task_id in enumerate(record[4]):
            bad = _bad_text(task_id)
            if bad is not None:
                return f"session field history[{i}]: {bad}"
    return None


def _raise_serialization_error(record: list[Any], ctx: Context, exc: Exception) -> NoReturn:
    if type(exc) is _Refused and exc.args and exc.args[0] == _TOO_MANY:
        raise SerializationError(f"context: {_TOO_MANY}") from None
    try:
        found = _find_problem(ctx._data)
        if found is None:
            problem = _field_problem(record, ctx)
            if problem is not None:
                found = (problem, None)
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


_MAP = 0
"""The code of a pending map: one with a pending key (a tuple, say), built once it is known."""


class _Pending:
    """A tuple, set, frozenset, registered value or map met while unpacking, built later.

    msgpack calls the extension hook from inside its unpacker, so unpacking a payload there
    would nest unpackers on the C stack, one per level, each with a large stack of its own.
    The hook only keeps the payload; ``_settle`` unpacks and builds what was kept, level by
    level, without recursion. Its hash is its identity: a map with pending keys is pending too.
    """

    __slots__ = ("built", "code", "data", "entry", "items")

    def __init__(self, code: int, data: bytes, items: Any) -> None:
        self.code = code
        self.data = data
        self.items = items  # the values inside, once unpacked: a list (a dict for a dataclass)
        self.entry: _Entry | None = None
        self.built: Any = None


def _map(pairs: list[tuple[Any, Any]]) -> Any:
    """A map whose keys are not all strings: a dict once few of its keys share a hash, or a
    pending map when one of its keys is still pending."""
    for key, _ in pairs:
        if type(key) is _Pending:
            flat: list[Any] = []
            for key_value in pairs:
                flat.extend(key_value)
            return _Pending(_MAP, b"", flat)
    if _crowded([key for key, _ in pairs]):
        raise _DecodeError(_crowd_message("keys of one map"))
    return dict(pairs)


def _unpackb(data: Any) -> Any:
    """msgpack data unpacked, in time in proportion to its size.

    Maps are first built in C with string keys only (Python hashes strings with a secret
    seed, so they cannot be chosen to collide). Data with a map keyed by anything else is
    unpacked again with each such map checked before it is built.
    """
    try:
        return unpackb(data, ext_hook=_ext_hook)  # strict_map_key: str and bytes keys only
    except MemoryError:
        raise
    except Exception:
        return unpackb(data, ext_hook=_ext_hook, strict_map_key=False, object_pairs_hook=_map)


def _ext_hook(code: int, data: bytes) -> Any:
    """msgpack's hook for every extension value."""
    if code == EXT_DATETIME:
        if len(data) == 8:
            return _DT_MIN + timedelta(0, 0, _Q.unpack(data)[0])
        wall, offset = _QQ.unpack(data)
        return _fixed_offset(offset)[1] + timedelta(0, 0, wall)
    if code in (EXT_TUPLE, EXT_SET, EXT_FROZENSET, EXT_REGISTERED):
        return _Pending(code, data, None)
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
    raise _DecodeError(f"unknown extension type code {code}")


def _items_of(pending: _Pending) -> Any:
    """Unpack ``pending``'s payload: the container of the values inside it."""
    if pending.items is not None:  # a pending map: its keys and values, flat
        return pending.items
    payload = _unpackb(pending.data)
    if type(payload) is not list:
        raise _DecodeError("an extension payload is not an array")
    if pending.code != EXT_REGISTERED:
        pending.items = payload
        return payload
    if len(payload) != 2 or type(payload[0]) is not str:
        raise _DecodeError("a registered value is not [name, value]")
    name, value = payload
    entry = _BY_NAME.get(name)
    if entry is None:
        raise _DecodeError(
            f"the type {name!r} is not registered; register it with "
            "flowcore.codec.register_type (under that name) before loading"
        )
    pending.entry = entry
    if entry.kind == _DATACLASS:
        if type(value) is not dict:
            raise _DecodeError(f"{name!r} is stored as {type(value).__name__}, not a map of fields")
        pending.items = value
    else:
        pending.items = [value]
    return pending.items


def _build(pending: _Pending) -> Any:
    """The value ``pending`` stands for, from its unpacked (and settled) items."""
    code = pending.code
    items = pending.items
    if code == EXT_TUPLE:
        return tuple(items)
    if code in (EXT_SET, EXT_FROZENSET):
        kind = "set" if code == EXT_SET else "frozenset"
        if _crowded(items):
            raise _DecodeError(_crowd_message(f"members of one {kind}"))
        return set(items) if code == EXT_SET else frozenset(items)
    if code == _MAP:
        keys = items[0::2]
        if _crowded(keys):
            raise _DecodeError(_crowd_message("keys of one map"))
        return dict(zip(keys, items[1::2], strict=True))
    entry = pending.entry
    assert entry is not None
    try:
        if entry.kind == _ENUM:
            return entry.cls(items[0])
        if entry.kind == _DATACLASS:
            return entry.cls(**items)
        return entry.decode(items[0])  # type: ignore[misc]
    except Exception as exc:
        raise _DecodeError(
            f"cannot rebuild {entry.name!r} from its stored value: {type(exc).__name__}: {exc}"
        ) from exc


def _put_built(container: Any) -> None:
    """Replace the pending values in ``container`` by what they were built into."""
    if type(container) is dict:
        for key, value in list(container.items()):
            if type(value) is _Pending:
                container[key] = value.built
    else:
        for i, value in enumerate(container):
            if type(value) is _Pending:
                container[i] = value.built


def _settle(data: dict[str, Any]) -> None:
    """Check the unpacked context ``data`` and build what was left pending, in place.

    Raises _DecodeError if values nest more than MAX_DEPTH levels (every container kind
    counts) or hold a msgpack Timestamp (flowcore never writes one): what a save could not
    store again. Works level by level, without recursion; tuples, sets and registered values
    are built inside out, after the values they hold.
    """
    order: list[Any] = []  # containers holding pending values, and those values, outside in
    pending_type = _Pending
    timestamp_type = Timestamp
    max_depth = MAX_DEPTH  # a C int when compiled
    level: list[Any] = [data]  # the containers whose values are at level ``depth``
    depth = 1
    while level:
        below: list[Any] = []
        for container in level:
            holds_pending = False
            # a list compiles to a fast loop: a dict's values are copied into one
            items = list(container.values()) if type(container) is dict else container
            for obj in items:
                t = type(obj)
                if t is str or t is int:
                    continue
                if t is list or t is dict:
                    below.append(obj)
                elif t is pending_type:
                    if not holds_pending:
                        holds_pending = True
                        order.append(container)
                    order.append(obj)
                    below.append(_items_of(obj))
                elif t is timestamp_type:
                    raise _DecodeError("it holds a msgpack Timestamp, which flowcore never writes")
        if below and depth > max_depth:
            raise _DecodeError(f"its values nest more than {MAX_DEPTH} levels deep")
        level = below
        depth += 1
    for item in reversed(order):
        if type(item) is _Pending:
            item.built = _build(item)
        else:
            _put_built(item)


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
    return _unpackb(memoryview(blob)[1:])


def _build_context(max_chat_messages: Any, data: Any, chat: Any) -> Context:
    if type(data) is not dict:
        raise _DecodeError("the context data is not a map")
    if not _str_keys(data):
        for key in data:
            if type(key) is not str:
                raise _DecodeError(f"a context key is not a str: {quote_id(key)}")
    _settle(data)
    if type(chat) is not list or len(chat) % 3:
        raise _DecodeError("the chat is not an array of (role, content, timestamp) triples")
    chat_list = chat
    n = len(chat_list)
    for i in range(0, n, 3):
        code = chat_list[i]
        # The context keeps the chat flat, as stored: check each triple, build nothing.
        if type(code) is not int or not 0 <= code <= 2:
            raise _DecodeError(f"unknown chat role code {code!r}")
        stamp = chat_list[i + 2]
        if type(chat_list[i + 1]) is not str or type(stamp) is not int:
            raise _DecodeError("a chat message has no str content or no int timestamp")
        # microseconds since 1970 from 0001-01-01 to 9999-12-31 (what a datetime can hold);
        # written out, the bounds compile to C constants
        if stamp < -62_135_596_800_000_000 or stamp > 253_402_300_799_999_999:
            raise _DecodeError("a chat timestamp is outside the years 1 to 9999")
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
        if type(record) is not list or not 8 <= len(record) <= 9:
            raise _DecodeError("the record is not an array of 8 or 9 fields")
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
        session = Session(
            session_id,
            graph_id,
            current_task_id,
            context,
            status_message=status_message,
            version=version,
            is_completed=is_completed,
            history=history,
            graph_version=1,
        )
        if len(record) == 9:
            _read_extras(record[8], session)
        session._stored_size = len(blob)  # type: ignore[arg-type]  # _unpack took it
    except MemoryError:
        raise
    except Exception as exc:
        raise StorageError(
            f"Session {quote_id(session_id)} could not be decoded: {_reason(exc)}"
        ) from exc
    return session


def decode_context(blob: bytes) -> Context:
    """The Context snapshotted by :func:`encode_context`."""
    try:
        record = _unpackb(blob)
        if type(record) is not list or len(record) != 3:
            raise _DecodeError("the snapshot is not an array of 3 fields")
        return _build_context(record[0], record[1], record[2])
    except MemoryError:
        raise
    except Exception as exc:
        raise StorageError(f"Context snapshot could not be decoded: {_reason(exc)}") from exc
