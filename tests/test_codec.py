"""The session codec: what a context may hold, how it round-trips, and how failures read."""

from __future__ import annotations

import dataclasses
import enum
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcore import codec
from flowcore._codec import decode_context, encode_context
from flowcore._context import ChatMessage, Context, MessageRole
from flowcore._errors import SerializationError, StorageError
from flowcore._session import Session
from flowcore.codec import (
    FORMAT_VERSION,
    MAX_DEPTH,
    decode_session,
    encode_session,
    register_type,
    unregister_type,
)

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(-timedelta(hours=8))

# -- helpers --------------------------------------------------------------------------------


def assert_same(a: Any, b: Any, where: str = "value") -> None:
    """``a == b`` and every part of ``b`` has exactly the type of the same part of ``a``."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} came back as {type(b).__name__}"
    if isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == b, where
        assert math.copysign(1.0, a) == math.copysign(1.0, b), f"{where}: sign of zero"
    elif isinstance(a, Decimal):
        assert str(a) == str(b), where  # exact: digits, exponent, sign, NaN
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a == b, where
        keys = {k: k for k in b}
        for k, v in a.items():
            assert_same(k, keys[k], f"{where}<key {k!r}>")
            assert_same(v, b[k], f"{where}[{k!r}]")
    elif isinstance(a, (set, frozenset)):
        assert a == b, where
        members = {m: m for m in b}
        for m in a:
            assert_same(m, members[m], f"{where}{{{m!r}}}")
    elif isinstance(a, (datetime, time)):
        assert a == b, where
        assert (a.utcoffset() is None) == (b.utcoffset() is None), f"{where}: naive/aware"
        assert a.utcoffset() == b.utcoffset(), f"{where}: offset"
        if isinstance(a, datetime):
            assert a.replace(tzinfo=None) == b.replace(tzinfo=None), f"{where}: wall time"
    else:
        assert a == b, where


def session_with(data: dict[str, Any] | None = None, **fields: Any) -> Session:
    return Session("s-1", "graph", "task", Context(data or {}), **fields)


def roundtrip(value: Any) -> Any:
    blob = encode_session(session_with({"v": value}))
    return decode_session(blob, session_id="s-1", version=1).context.get("v")


def check_roundtrip(value: Any) -> None:
    assert_same(value, roundtrip(value))


def record_blob(*, data: Any = None, chat: Any = None, **changes: Any) -> bytes:
    """A hand-made version-1 blob: the 8-field record, with any field replaced."""
    fields = {
        "graph_id": "g",
        "current_task_id": "t",
        "status_message": None,
        "is_completed": False,
        "history": [],
        "max_chat_messages": 1000,
        "data": {} if data is None else data,
        "chat": [] if chat is None else chat,
    }
    fields.update(changes)
    return bytes([FORMAT_VERSION]) + msgpack.packb(list(fields.values()), datetime=True)


def load(blob: Any, session_id: str = "s-1") -> Session:
    return decode_session(blob, session_id=session_id, version=1)


def nested_ext(code: int, payload: bytes, depth: int) -> Any:
    for _ in range(depth):
        payload = msgpack.packb(msgpack.ExtType(code, payload))
    return msgpack.ExtType(code, payload)


@pytest.fixture
def register() -> Iterator[Callable[..., Any]]:
    """register_type, undone after the test so registrations never leak between tests."""
    registered: list[type] = []

    def _register(cls: type, *args: Any, **kwargs: Any) -> Any:
        result = register_type(cls, *args, **kwargs)
        registered.append(cls)
        return result

    yield _register
    for cls in registered:
        unregister_type(cls)


# -- user types used by the tests -------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: float
    y: float
    label: str = ""


@dataclasses.dataclass
class Order:
    id: int
    lines: list[Any]
    placed: datetime
    total: Decimal
    tags: frozenset[str] = frozenset()
    cached: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass
class Node:
    name: str
    next: Node | None = None


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Shape(enum.Enum):
    """An enum whose values are themselves encoded (a tuple)."""

    SQUARE = (4, "square")
    TRIANGLE = (3, "triangle")


class Money:
    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


def money_encode(m: Money) -> Any:
    return [m.amount, m.currency]


def money_decode(value: Any) -> Money:
    return Money(value[0], value[1])


class Opaque:
    """A class that is neither an enum nor a dataclass."""


class MyStr(str):
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


class MyInt(int):
    pass


# -- the public module ------------------------------------------------------------------------


def test_public_names():
    assert set(codec.__all__) == {
        "FORMAT_VERSION",
        "MAX_DEPTH",
        "decode_session",
        "encode_session",
        "register_type",
        "unregister_type",
    }
    assert FORMAT_VERSION == 1


def test_blob_layout_is_a_version_byte_then_one_msgpack_array():
    ctx = Context({"n": 1})
    stamp = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    ctx.add_message(ChatMessage(MessageRole.ASSISTANT, "hi", stamp))
    session = Session(
        "s-1", "g", "t", ctx, status_message="ok", is_completed=True, history=["a", "b"]
    )
    blob = encode_session(session)
    assert blob[0] == FORMAT_VERSION
    record = msgpack.unpackb(blob[1:])
    micros = (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert record == ["g", "t", "ok", True, ["a", "b"], 1000, {"n": 1}, [1, "hi", micros]]
    assert b"s-1" not in blob  # the id lives beside the blob


# -- every supported type round-trips to an equal value of the same type -------------------


SUPPORTED_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**64,
    -(2**64),
    -(2**100),
    2**1000 + 7,
    -(2**63) - 1,
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    "",
    "héllo ✓",
    b"",
    b"\x00\xff",
    [],
    [1, "a", None],
    (),
    (1,),
    (1, (2, (3, "x")), [4]),
    {},
    {"a": 1, "b": [1, 2]},
    set(),
    {1, 2, "x"},
    frozenset(),
    frozenset({"a", (1, 2)}),
    datetime(2024, 2, 29, 23, 59, 59, 999999),
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2024, 1, 1, 12, tzinfo=UTC),
    datetime(2024, 1, 1, 12, 30, 15, 17, tzinfo=IST),
    datetime(1, 1, 1, tzinfo=PST),
    datetime(9999, 12, 31, 23, 59, tzinfo=IST),
    datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1, microseconds=7))),
    date(2024, 2, 29),
    date.min,
    date.max,
    time(0, 0),
    time(23, 59, 59, 999999),
    time(12, 30, tzinfo=UTC),
    time(12, 30, 1, 5, tzinfo=PST),
    timedelta(0),
    timedelta(days=-3, seconds=5, microseconds=7),
    timedelta.max,
    timedelta.min,
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    uuid.UUID(int=0),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("1E+30"),
    Decimal("-Infinity"),
    Decimal("3.141592653589793238462643383279502884197"),
]


@pytest.mark.parametrize("value", SUPPORTED_VALUES, ids=repr)
def test_each_supported_value_round_trips(value: Any) -> None:
    check_roundtrip(value)


def test_nested_mix_round_trips():
    value = {
        "tuple": (1, [2, (3, frozenset({4, (5, 6)}))], {"k": {7, 8}}),
        "when": [datetime(2020, 1, 1, tzinfo=IST), date(2020, 1, 2), time(3, tzinfo=UTC)],
        "ids": {uuid.UUID(int=1): Decimal("0.1"), (1, "a"): timedelta(1)},
        "keys": {1: "int", 2.5: "float", None: "none", False: "bool", b"raw": "bytes"},
        "frozen_key": {frozenset({1, 2}): "fs", date(2020, 1, 1): "date"},
        "big": [2**64, -(2**100), (2**200,)],
    }
    check_roundtrip(value)
    check_roundtrip([value, (value,)])


def test_bool_stays_bool_and_int_stays_int():
    back = roundtrip([True, 1, False, 0, {True: 1, 2: False}])
    assert [type(x) for x in back[:4]] == [bool, int, bool, int]
    assert [type(k) for k in back[4]] == [bool, int]


def test_nan_round_trips():
    back = roundtrip([math.nan, Decimal("NaN"), Decimal("sNaN")])
    assert math.isnan(back[0])
    assert type(back[0]) is float
    assert [str(back[1]), str(back[2])] == ["NaN", "sNaN"]


def test_big_ints_round_trip():
    for n in (2**64, -(2**100), 2**64 - 1, -(2**63) - 1, 10**400, -(10**400)):
        back = roundtrip(n)
        assert back == n
        assert type(back) is int


def test_aware_datetime_keeps_the_instant_with_a_fixed_offset():
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    paris: tzinfo
    try:
        paris = ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:  # no tz database on this machine
        paris = timezone(timedelta(hours=2))
    original = datetime(2024, 7, 1, 14, 30, 5, 123, tzinfo=paris)
    back = roundtrip(original)
    assert back == original
    assert back.utcoffset() == timedelta(hours=2)
    assert type(back.tzinfo) is timezone
    assert back.replace(tzinfo=None) == datetime(2024, 7, 1, 14, 30, 5, 123)


def test_aware_datetime_with_a_non_utc_offset_round_trips():
    original = datetime(2024, 3, 1, 12, 0, tzinfo=IST)
    back = roundtrip(original)
    assert back == original
    assert back.tzinfo == IST
    assert back.hour == 12


def test_naive_datetime_stays_naive():
    original = datetime(2024, 3, 1, 12, 0, 0, 1)
    back = roundtrip(original)
    assert back == original
    assert back.tzinfo is None


def test_bytearray_comes_back_as_bytes():
    # msgpack writes bytearray as bin itself (documented): it cannot keep the type.
    assert roundtrip(bytearray(b"ab")) == b"ab"


def test_a_container_stored_twice_comes_back_as_two_equal_copies():
    shared = [1, 2]
    back = roundtrip({"a": shared, "b": shared})
    assert back == {"a": [1, 2], "b": [1, 2]}
    assert back["a"] is not back["b"]


def test_deep_but_legal_nesting_round_trips():
    # MAX_DEPTH levels of lists: the value under the key is level 1
    levels = MAX_DEPTH
    deep: Any = "leaf"
    for _ in range(levels):
        deep = [deep]
    back = roundtrip(deep)
    for _ in range(levels):
        assert type(back) is list
        assert len(back) == 1
        back = back[0]
    assert back == "leaf"
    tuples: Any = "leaf"
    for _ in range(32):
        tuples = (tuples,)
    check_roundtrip(tuples)


# -- the session record ---------------------------------------------------------------------


def test_all_session_fields_round_trip():
    ctx = Context({"a": 1}, max_chat_messages=5)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    ctx.add_message(ChatMessage(MessageRole.USER, "hello", base + timedelta(microseconds=1)))
    ctx.add_message(ChatMessage(MessageRole.ASSISTANT, "é" * 300, base + timedelta(days=400)))
    ctx.add_message(ChatMessage(MessageRole.SYSTEM, "", datetime(1900, 1, 1, tzinfo=UTC)))
    ctx.add_message(ChatMessage(MessageRole.USER, "x", datetime(2024, 1, 1, 3, tzinfo=IST)))
    session = Session(
        "s-1",
        "graph-7",
        "review",
        ctx,
        status_message="waiting for approval",
        version=3,
        is_completed=True,
        history=["start", "collect", "review"],
    )
    back = decode_session(encode_session(session), session_id="other-id", version=9)
    assert back.id == "other-id"
    assert back.version == 9
    assert back.graph_id == "graph-7"
    assert back.current_task_id == "review"
    assert back.status_message == "waiting for approval"
    assert back.is_completed is True
    assert back.history == ["start", "collect", "review"]
    assert back.context == ctx
    assert back.context.max_chat_messages == 5
    chat = back.context.get_chat_history()
    assert chat == ctx.get_chat_history()
    assert [m.role for m in chat] == [
        MessageRole.USER,
        MessageRole.ASSISTANT,
        MessageRole.SYSTEM,
        MessageRole.USER,
    ]
    assert [m.timestamp for m in chat] == [m.timestamp for m in ctx.get_chat_history()]
    assert all(m.timestamp.tzinfo is UTC for m in chat)


@pytest.mark.parametrize("cap", [None, 0, 2])
def test_chat_cap_round_trips(cap: int | None) -> None:
    ctx = Context(max_chat_messages=cap)
    for i in range(4):
        ctx.add_user_message(f"m{i}")
    back = load(encode_session(Session("s-1", "g", "t", ctx))).context
    assert back.max_chat_messages == cap
    assert back.get_chat_history() == ctx.get_chat_history()
    back.add_user_message("more")  # the cap still applies after loading
    assert back.chat_history_len() == (5 if cap is None else cap)


def test_a_new_session_round_trips_with_defaults():
    back = load(encode_session(Session.new_from_task("s-1", "start")))
    assert (back.graph_id, back.current_task_id, back.status_message) == ("default", "start", None)
    assert (back.is_completed, back.history, back.context.to_dict()) == (False, [], {})


def test_decoded_values_are_independent_copies():
    session = session_with({"items": [1, 2]})
    blob = encode_session(session)
    first, second = load(blob), load(blob)
    first.context.get("items").append(3)
    assert second.context.get("items") == [1, 2]
    assert session.context.get("items") == [1, 2]


def test_a_bad_session_field_is_refused_at_encode():
    session = session_with()
    session.history = ["a", 3]  # type: ignore[list-item]
    with pytest.raises(SerializationError, match="history"):
        encode_session(session)
    session = session_with()
    session.graph_id = MyStr("g")
    with pytest.raises(SerializationError, match="graph_id"):
        encode_session(session)


def test_context_snapshot_round_trips():
    ctx = Context({"t": (1, {2}), "n": 2**70}, max_chat_messages=3)
    ctx.add_system_message("be brief")
    back = decode_context(encode_context(ctx))
    assert back == ctx
    assert_same(ctx.to_dict(), back.to_dict())
    assert back.max_chat_messages == 3


def test_context_snapshot_reports_paths_and_bad_blobs():
    with pytest.raises(SerializationError, match=r"context\['x'\]\[0\]: cannot store"):
        encode_context(Context({"x": [object()]}))
    with pytest.raises(StorageError, match="snapshot could not be decoded"):
        decode_context(b"\xc1")


# -- registered types -------------------------------------------------------------------------


def test_dataclass_round_trips(register):
    register(Point)
    check_roundtrip(Point(1, -2))
    check_roundtrip([Point(1, 2), (Point(3, 4),), {"p": Point(5, 6)}])


def test_frozen_dataclass_round_trips_and_can_be_a_key(register):
    register(FrozenPoint)
    check_roundtrip(FrozenPoint(1.5, 2.5, "a"))
    check_roundtrip({FrozenPoint(0.0, 1.0): "origin-ish", "set": {FrozenPoint(1.0, 1.0)}})


def test_dataclass_fields_are_encoded_recursively(register):
    register(Order)
    register(Point)
    order = Order(7, [Point(1, 2), ("x", 2**65)], datetime(2024, 1, 1, tzinfo=IST), Decimal("9.90"))
    order.cached = 99  # init=False: not stored, the constructor's default comes back
    back = roundtrip(order)
    assert type(back) is Order
    assert (back.id, back.lines, back.placed, back.total) == (
        7,
        [Point(1, 2), ("x", 2**65)],
        order.placed,
        Decimal("9.90"),
    )
    assert_same(order.lines, back.lines)
    assert back.cached == 0


def test_enums_round_trip(register):
    register(Color)
    register(Priority)
    register(Shape)
    for member in [Color.RED, Priority.HIGH, Shape.TRIANGLE]:
        back = roundtrip(member)
        assert back is member
    check_roundtrip({Color.GREEN: [Priority.LOW], "s": {Color.RED}})


def test_custom_class_with_functions_round_trips(register):
    register(Money, money_encode, money_decode)
    check_roundtrip(Money(Decimal("12.50"), "EUR"))
    back = roundtrip([1, Money(Decimal(1), "USD"), (Money(Decimal(2), "JPY"),)])
    assert back == [1, Money(Decimal(1), "USD"), (Money(Decimal(2), "JPY"),)]
    assert type(back[1].amount) is Decimal


def test_registered_type_nested_inside_a_list(register):
    register(Point)
    back = roundtrip([[1, Point(1, 2)], [Point(3, 4)]])
    assert back == [[1, Point(1, 2)], [Point(3, 4)]]


def test_register_type_is_a_class_decorator(register):
    decorated = register(Node)
    assert decorated is Node
    check_roundtrip(Node("a", Node("b")))


def test_the_default_name_is_module_and_qualname(register):
    register(Point)
    blob = encode_session(session_with({"p": Point(1, 2)}))
    assert f"{Point.__module__}.Point".encode() in blob


def test_a_custom_name_is_stored_instead(register):
    register(Point, name="geo.Point/v1")
    blob = encode_session(session_with({"p": Point(1, 2)}))
    assert b"geo.Point/v1" in blob
    assert load(blob).context.get("p") == Point(1, 2)


def test_registering_again_replaces_the_entry(register):
    register(Money, money_encode, money_decode, name="money/v1")
    register(Money, lambda m: {"a": m.amount, "c": m.currency}, lambda v: Money(v["a"], v["c"]))
    blob = encode_session(session_with({"m": Money(Decimal(1), "EUR")}))
    assert b"money/v1" not in blob
    assert load(blob).context.get("m") == Money(Decimal(1), "EUR")


def test_a_name_used_by_another_class_is_refused(register):
    register(Point, name="shared")
    with pytest.raises(ValueError, match="already used") as info:
        register(FrozenPoint, name="shared")
    message = str(info.value)
    assert "FrozenPoint as 'shared'" in message
    assert f"already used by {Point.__module__}.Point;" in message
    assert load(encode_session(session_with({"p": Point(1, 2)}))).context.get("p") == Point(1, 2)


def test_a_plain_class_needs_both_functions(register):
    with pytest.raises(TypeError, match=r"encode=.*decode=") as info:
        register(Opaque)
    assert "Opaque" in str(info.value)
    with pytest.raises(TypeError, match="both encode and decode"):
        register(Opaque, lambda o: 1)


def test_builtin_types_cannot_be_registered(register):
    for cls in (int, str, dict, tuple, datetime, bytearray):
        with pytest.raises(ValueError, match="stored by the codec itself"):
            register(cls, lambda o: o, lambda v: v)


def test_unregister_type():
    register_type(Point)
    assert unregister_type(Point) is True
    assert unregister_type(Point) is False
    with pytest.raises(SerializationError, match="Point"):
        encode_session(session_with({"p": Point(1, 2)}))


# -- what cannot be stored -----------------------------------------------------------------


def serialization_error(data: dict[str, Any]) -> SerializationError:
    with pytest.raises(SerializationError) as info:
        encode_session(session_with(data))
    return info.value


def test_a_lock_deep_inside_names_its_path_and_type():
    err = serialization_error({"order": {"items": [1, 2, 3, threading.Lock()]}})
    message = str(err)
    assert message.startswith("context['order']['items'][3]: cannot store object of type ")
    assert "lock" in message.lower()  # the type is _thread.lock
    assert "register_type" in message


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"x": object()}, "context['x']"),
        ({"t": (1, (2, object()))}, "context['t'][1][1]"),
        ({"s": {1, (2, Opaque())}}, "context['s']{...}[1]"),
        ({"k": {(1, object()): 2}}, "context['k']<key>[1]"),
        ({"d": {1: {"z": [Opaque()]}}}, "context['d'][1]['z'][0]"),
    ],
)
def test_the_path_to_an_unsupported_value(data: dict[str, Any], path: str) -> None:
    assert str(serialization_error(data)).startswith(f"{path}: cannot store object of type ")


def test_a_dataclass_field_path(register):
    register(Point)
    err = serialization_error({"p": [Point(1, object())]})  # type: ignore[arg-type]
    assert str(err).startswith("context['p'][0].y: cannot store object of type object")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (MyStr("x"), "MyStr"),
        (MyDict(a=1), "MyDict"),
        (MyInt(3), "MyInt"),
        (Priority.LOW, "Priority"),
    ],
)
def test_a_subclass_of_a_builtin_type_is_refused(value: Any, name: str) -> None:
    message = str(serialization_error({"v": [value]}))
    assert message.startswith(f"context['v'][0]: cannot store object of type {name}")
    assert "register" in message


def test_a_subclass_of_a_registered_type_is_refused(register):
    register(Point)

    @dataclasses.dataclass
    class Point3(Point):
        z: int = 0

    class Cash(Money):
        pass

    register(Money, money_encode, money_decode)
    message = str(serialization_error({"p": Point3(1, 2, 3)}))
    assert message.startswith("context['p']: cannot store object of type ")
    assert "Point3" in message
    message = str(serialization_error({"m": Cash(Decimal(1), "EUR")}))
    assert "Cash" in message
    assert "subclass of" in message


def test_an_unregistered_enum_or_dataclass_gets_a_hint():
    assert "register_type(Color)" in str(serialization_error({"c": Color.RED}))
    assert "register_type(Point)" in str(serialization_error({"p": Point(1, 2)}))


def test_a_cycle_is_refused():
    loop: list[Any] = []
    loop.append(loop)
    err = serialization_error({"a": loop})
    assert str(err).startswith(
        "context['a'][0]: cyclic structure (a container that contains itself) cannot be stored"
    )


def test_cycles_through_dicts_tuples_and_dataclasses(register):
    d: dict[str, Any] = {}
    d["self"] = d
    assert str(serialization_error({"d": d})).startswith("context['d']['self']: cyclic")
    inner: list[Any] = []
    t = (inner,)
    inner.append(t)
    assert str(serialization_error({"t": t})).startswith("context['t'][0][0]: cyclic")
    register(Node)
    node = Node("a")
    node.next = Node("b", node)
    assert str(serialization_error({"n": node})).startswith("context['n'].next.next: cyclic")


def test_a_failing_encode_function_is_reported_with_its_cause(register):
    def broken(m: Money) -> Any:
        raise ValueError("no exchange rate")

    register(Money, broken, money_decode)
    err = serialization_error({"prices": {"eur": Money(Decimal(1), "EUR")}})
    assert str(err).startswith("context['prices']['eur']: the encode function registered for")
    assert "ValueError: no exchange rate" in str(err)
    assert isinstance(err.__cause__, ValueError)


def test_an_encode_function_returning_something_unstorable(register):
    register(Money, lambda m: [m.amount, threading.Lock()], money_decode)
    err = serialization_error({"m": Money(Decimal(1), "EUR")})
    assert str(err).startswith("context['m'][1]: cannot store object of type ")


def test_nesting_too_deep_is_refused_with_its_path():
    deep: Any = None
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    message = str(serialization_error({"deep": deep}))
    assert message.startswith("context['deep'][0][0][0]")
    assert "nested too deeply" in message
    tuples: Any = None
    for _ in range(MAX_DEPTH + 1):
        tuples = (tuples,)
    message = str(serialization_error({"t": tuples}))
    assert message.startswith("context['t'][0][0]")
    assert "nested too deeply" in message


def test_an_encode_function_that_never_bottoms_out(register):
    register(Opaque, lambda o: Opaque(), lambda v: Opaque())
    assert "nested too deeply" in str(serialization_error({"o": Opaque()}))


def test_failures_leave_no_state_behind():
    for _ in range(3):
        serialization_error({"t": (((object(),),),)})
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = (deep,)
    check_roundtrip(deep)


def test_encoding_in_threads():
    value = {"t": (1, (2, frozenset({3})), {4}), "dt": datetime(2024, 1, 1, tzinfo=IST)}

    def work() -> None:
        for _ in range(200):
            assert_same(value, roundtrip(value))

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work) for _ in range(4)]:
            future.result()  # re-raises a failure from the thread


# -- blobs that cannot be read ----------------------------------------------------------------


def storage_error(blob: Any, session_id: str = "abc") -> str:
    with pytest.raises(StorageError) as info:
        decode_session(blob, session_id=session_id, version=1)
    message = str(info.value)
    assert message.startswith(f"Session '{session_id}' could not be decoded: ")
    return message


def test_another_format_version_is_refused_with_both_versions():
    blob = encode_session(session_with({"a": 1}))
    message = storage_error(bytes([7]) + blob[1:])
    assert "format version 7" in message
    assert "reads format version 1" in message


def test_empty_and_non_bytes_blobs():
    assert "empty" in storage_error(b"")
    for blob in ("text", None, 12, [1, 2]):
        assert "expected bytes" in storage_error(blob)


def test_bytes_like_blobs_are_read():
    blob = encode_session(session_with({"a": (1,)}))
    assert load(bytearray(blob)).context.get("a") == (1,)
    assert load(memoryview(blob)).context.get("a") == (1,)


def test_every_truncation_of_a_real_blob_is_refused(register):
    register(Point)
    ctx = Context({"a": [1, (2, 2**70)], "p": Point(1, 2), "d": datetime(2024, 1, 1, tzinfo=IST)})
    ctx.add_user_message("hi")
    blob = encode_session(Session("abc", "g", "t", ctx, history=["x"]))
    for end in range(len(blob)):
        storage_error(blob[:end])
    storage_error(blob + b"\x00")  # extra data after the record


@pytest.mark.parametrize(
    "blob",
    [
        b"\x01",
        b"\x01\xc1",
        b"\x01\xff\xff\xff",
        b"\x00garbage",
        bytes([FORMAT_VERSION]) + msgpack.packb({"graph_id": "g"}),
        bytes([FORMAT_VERSION]) + msgpack.packb(["g", "t"]),
        record_blob(graph_id=1),
        record_blob(current_task_id=None),
        record_blob(status_message=b"x"),
        record_blob(is_completed=1),
        record_blob(history="abc"),
        record_blob(history=["a", 2]),
        record_blob(max_chat_messages=-1),
        record_blob(max_chat_messages="5"),
        record_blob(data=[]),
        record_blob(data={1: "non-str key"}),
        record_blob(chat={}),
        record_blob(chat=[0, "hi"]),
        record_blob(chat=[9, "hi", 1_700_000_000_000_000]),  # unknown role
        record_blob(chat=[0, 5, 1_700_000_000_000_000]),  # content not a str
        record_blob(chat=[0, "hi", 1.5]),  # timestamp not an int
        record_blob(chat=[0, "hi", "2024-01-01"]),
    ],
)
def test_malformed_records_are_refused(blob: bytes) -> None:
    storage_error(blob)


@pytest.mark.parametrize(
    "value",
    [
        msgpack.ExtType(99, b""),  # unknown code
        msgpack.ExtType(1, b""),  # empty int
        msgpack.ExtType(2, b"\xc1"),  # tuple payload not msgpack
        msgpack.ExtType(2, msgpack.packb({"a": 1})),  # tuple payload not an array
        msgpack.ExtType(2, msgpack.packb([1]) + b"\x01"),  # extra data in a payload
        msgpack.ExtType(3, msgpack.packb([[1]])),  # unhashable set member
        msgpack.ExtType(4, msgpack.packb([{}])),
        msgpack.ExtType(5, b"abc"),  # datetime of the wrong length
        msgpack.ExtType(5, b"\x7f" + b"\xff" * 7),  # datetime out of range
        msgpack.ExtType(5, b"\x00" * 8 + b"\x7f" + b"\x00" * 7),  # offset out of range
        msgpack.ExtType(6, b"\x00\x00\x00\x00"),  # date ordinal 0
        msgpack.ExtType(7, b"\x7f" + b"\x00" * 7),  # time past midnight
        msgpack.ExtType(8, b"\x7f\xff\xff\xff" + b"\x00" * 8),  # timedelta out of range
        msgpack.ExtType(9, b"short"),  # uuid
        msgpack.ExtType(10, b"not a number"),  # decimal
        msgpack.ExtType(10, b"\xff"),  # decimal not ascii
        msgpack.ExtType(11, msgpack.packb(["only-name"])),  # registered: not [name, value]
        msgpack.ExtType(11, msgpack.packb([1, 2])),
        nested_ext(2, msgpack.packb([]), 200),  # nested far too deep: an error, not a crash
    ],
    ids=repr,
)
def test_bad_extension_payloads_are_refused(value: Any) -> None:
    storage_error(record_blob(data={"v": value}))


def test_unhashable_keys_from_a_crafted_blob_are_refused():
    # {"v": {[1]: 2}}: a map whose key is an array, written by hand
    fields: list[Any] = ["g", "t", None, False, [], 1000]
    crafted = bytes([FORMAT_VERSION, 0x98]) + b"".join(msgpack.packb(x) for x in fields)
    crafted += b"\x81\xa1v\x81\x91\x01\x02" + msgpack.packb([])
    assert "unhashable" in storage_error(crafted)


def test_an_unknown_registered_name_is_refused(register):
    register(Point)
    blob = encode_session(session_with({"p": Point(1, 2)}))
    unregister_type(Point)
    message = storage_error(blob, "s-9")
    assert f"'{Point.__module__}.Point' is not registered" in message
    assert "register" in message
    assert "before loading" in message


def test_a_failing_decode_is_refused_with_its_cause(register):
    def broken(value: Any) -> Money:
        raise KeyError("currency")

    register(Money, money_encode, broken)
    blob = encode_session(session_with({"m": Money(Decimal(1), "EUR")}))
    with pytest.raises(StorageError, match="cannot rebuild") as info:
        load(blob)
    assert isinstance(info.value.__cause__.__cause__, KeyError)  # type: ignore[union-attr]


def test_a_stored_enum_value_that_no_longer_exists(register):
    register(Color)
    blob = encode_session(session_with({"c": Color.RED}))
    unregister_type(Color)

    class Color2(enum.Enum):  # the enum changed: RED is gone
        GREEN = "green"

    register(Color2, name=f"{Color.__module__}.Color")
    assert "cannot rebuild" in storage_error(blob)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_crash(tail: bytes) -> None:
    try:
        decode_session(bytes([FORMAT_VERSION]) + tail, session_id="fuzz", version=1)
    except StorageError as exc:
        message = str(exc)
    else:
        return  # some byte strings are valid records
    assert message.startswith("Session 'fuzz' could not be decoded: ")


# -- property tests ---------------------------------------------------------------------------

offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23))
timezones = st.one_of(st.none(), st.just(UTC), offsets.map(timezone))

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.dates(),
    st.datetimes(timezones=timezones),
    st.times(timezones=timezones),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.frozensets(inner, max_size=3),
    ),
    max_leaves=6,
)
values = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), values, max_size=5))
def test_any_supported_context_round_trips(data: dict[str, Any]) -> None:
    back = load(encode_session(session_with(data))).context.to_dict()
    assert_same(data, back, "context")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values,
    st.sampled_from([Color.RED, Priority.HIGH, Shape.SQUARE]),
    st.integers(),
    st.text(max_size=5),
)
def test_registered_types_inside_any_value_round_trip(
    value: Any, member: enum.Enum, n: int, label: str
) -> None:
    types: list[type] = [Color, Priority, Shape, Point, FrozenPoint]
    for cls in types:
        register_type(cls)
    register_type(Money, money_encode, money_decode)
    try:
        data = {
            "v": [value, member, Point(n, -n), FrozenPoint(1.0, 2.0, label)],
            "m": (Money(Decimal(n), label), {FrozenPoint(0.5, 0.5): value}),
        }
        back = load(encode_session(session_with(data))).context.to_dict()
        assert_same(data, back, "context")
    finally:
        for cls in [*types, Money]:
            unregister_type(cls)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(MessageRole)),
            st.text(max_size=30),
            st.datetimes(  # ChatMessage converts to UTC, so stay clear of year 1 and 9999
                min_value=datetime(1000, 1, 1),
                max_value=datetime(9000, 1, 1),
                timezones=timezones.filter(lambda tz: tz is not None),
            ),
        ),
        max_size=6,
    ),
    st.one_of(st.none(), st.integers(min_value=0, max_value=8)),
)
def test_any_chat_round_trips(messages: list[Any], cap: int | None) -> None:
    ctx = Context(max_chat_messages=cap)
    for role, content, stamp in messages:
        ctx.add_message(ChatMessage(role, content, stamp))
    back = load(encode_session(Session("s-1", "g", "t", ctx))).context
    assert back == ctx
    for a, b in zip(ctx.get_chat_history(), back.get_chat_history(), strict=True):
        assert b.timestamp == a.timestamp
        assert b.timestamp.tzinfo is UTC
