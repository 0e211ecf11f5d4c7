"""What no stored value and no blob may do: crash the process, or take time out of proportion.

Values nest at most MAX_DEPTH levels, every container kind counting together; sets and maps
whose members share a hash are refused; msgpack's own ExtType and Timestamp are not context
values. Cases that crashed the process run in a subprocess, so a crash fails the test instead
of killing the test run.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from typing import Any

import msgpack
import pytest

from flowcore import Context, SerializationError, Session, StorageError
from flowcore.codec import (
    FORMAT_VERSION,
    MAX_DEPTH,
    decode_session,
    encode_session,
    register_type,
    unregister_type,
)

P = 2**61 - 1  # ints that differ by a multiple of this share a hash


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter on the same implementation of the hot path."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


def encode(value: Any) -> bytes:
    return encode_session(Session.new_from_task("s", "t", context={"v": value}))


def decode(blob: bytes) -> Session:
    return decode_session(blob, session_id="s", version=1)


def blob_holding(value: Any) -> bytes:
    """A blob written by hand (not by the codec) whose context is ``{"v": value}``."""
    record = ["g", "t", None, False, [], 1000, {"v": value}, []]
    return bytes([FORMAT_VERSION]) + msgpack.packb(record)


def tuple_ext(payload: Any) -> msgpack.ExtType:
    """How the codec stores a tuple: extension 2 around its items, packed."""
    return msgpack.ExtType(2, msgpack.packb(payload))


# -- nesting ----------------------------------------------------------------------------------


def test_the_deep_value_that_crashed_the_packer_is_refused_with_its_path():
    result = run_python(
        """
        from flowcore import Session, SerializationError
        from flowcore.codec import encode_session
        x = None
        for _ in range(20):
            for _ in range(1000):
                x = [x]
            x = (x,)
        try:
            encode_session(Session.new_from_task("s", "t", context={"v": x}))
        except SerializationError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("context['v'][0][0]")
    assert "nested too deeply" in result.stdout


def test_a_small_planted_blob_nested_too_deeply_is_a_storage_error():
    # 20 tuples around 1,000 lists each: about 20 KB, which decoded, then crashed on save.
    inner: Any = None
    for _ in range(20):
        for _ in range(900):
            inner = [inner]
        inner = tuple_ext(inner)
    blob = blob_holding(inner)
    assert len(blob) < 40_000
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"flowcore-deep-{os.getpid()}.bin")
    with open(path, "wb") as out:
        out.write(blob)
    try:
        result = run_python(
            f"""
            from flowcore import StorageError
            from flowcore.codec import decode_session
            blob = open({path!r}, "rb").read()
            try:
                decode_session(blob, session_id="planted", version=1)
            except StorageError as exc:
                print(exc)
            """
        )
    finally:
        os.unlink(path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Session 'planted' could not be decoded" in result.stdout
    assert f"nest more than {MAX_DEPTH} levels" in result.stdout


@dataclasses.dataclass(frozen=True)
class Box:
    inner: Any


WRAPPERS: dict[str, Any] = {
    "list": lambda x: [x],
    "dict": lambda x: {"k": x},
    "tuple": lambda x: (x,),
    "set": lambda x: {x},  # around frozensets: a set cannot hold a set
    "frozenset": lambda x: frozenset([x]),
    "dataclass": Box,
}


@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_max_depth_levels_of_each_kind_round_trip_and_one_more_is_refused(kind):
    inner = WRAPPERS["frozenset" if kind == "set" else kind]
    deep: Any = None
    for _ in range(MAX_DEPTH - 1):
        deep = inner(deep)
    deep = WRAPPERS[kind](deep)
    assert depth_of(deep) == MAX_DEPTH
    register_type(Box, name="tests.Box")
    try:
        assert decode(encode(deep)).context.get("v") == deep
        with pytest.raises(SerializationError, match="nested too deeply"):
            encode([deep])
    finally:
        unregister_type(Box)


def depth_of(value: Any) -> int:
    """How many containers deep ``value`` nests (iteratively: values here nest deeply)."""
    deepest = 0
    todo = [(value, 1)]
    while todo:
        obj, level = todo.pop()
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = list(obj)
        elif isinstance(obj, dict):
            items = list(obj.values())
        elif dataclasses.is_dataclass(obj):
            items = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        else:
            continue
        deepest = max(deepest, level)
        todo.extend((item, level + 1) for item in items)
    return deepest


def test_container_kinds_count_together():
    mixed: Any = 0
    for i in range(MAX_DEPTH):
        mixed = ([mixed], {"k": mixed}, (mixed,))[i % 3]
    assert depth_of(mixed) == MAX_DEPTH
    assert decode(encode(mixed)).context.get("v") == mixed
    with pytest.raises(SerializationError, match="nested too deeply"):
        encode((mixed,))


def test_a_blob_with_lists_nested_one_level_too_deep_is_refused():
    deep: Any = None
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(StorageError, match=f"nest more than {MAX_DEPTH} levels"):
        decode(blob_holding(deep))


def test_tuples_nested_to_the_limit_decode_on_a_small_thread_stack():
    # Decoding builds tuples level by level: it needs no C stack per level, so even a thread
    # with a 256 KiB stack decodes MAX_DEPTH nested tuples (each nested unpacker used ~40 KiB).
    result = run_python(
        """
        import threading
        from flowcore import Session
        from flowcore.codec import MAX_DEPTH, decode_session, encode_session
        deep = None
        for _ in range(MAX_DEPTH):
            deep = (deep,)
        blob = encode_session(Session.new_from_task("s", "t", context={"v": deep}))
        out = []
        def work():
            out.append(decode_session(blob, session_id="s", version=1).context.get("v") == deep)
        threading.stack_size(256 * 1024)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        print(out)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[True]"


def test_a_structure_sharing_its_containers_is_refused_not_expanded():
    # 2**60 values once expanded: packing it would never end (nor fit in memory).
    result = run_python(
        """
        from flowcore import Session, SerializationError
        from flowcore.codec import encode_session
        x = []
        for _ in range(60):
            x = [x, x]
        try:
            encode_session(Session.new_from_task("s", "t", context={"v": x}))
        except SerializationError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "values in one context" in result.stdout


def test_a_container_shared_a_few_times_is_still_stored_as_copies():
    shared = (1, [2, 3])
    back = decode(encode([shared, shared, {"again": shared}])).context.get("v")
    assert back == [shared, shared, {"again": shared}]


# -- values that share a hash ------------------------------------------------------------------


def colliding_ints(n: int) -> list[int]:
    return [P * (i + 1) for i in range(n)]


def test_a_blob_with_a_set_of_colliding_ints_is_refused():
    # 25,000 ints of one hash, about 250 KB: building the set took seconds per load.
    members = [bigint_ext(m) for m in colliding_ints(25_000)]
    blob = blob_holding(msgpack.ExtType(3, msgpack.packb(members)))
    assert 200_000 < len(blob) < 1_000_000
    with pytest.raises(StorageError, match="share one hash"):
        decode(blob)


def test_a_set_of_colliding_values_is_refused_at_save_with_its_path():
    with pytest.raises(SerializationError) as info:
        encode({"ids": set(colliding_ints(100))})
    assert str(info.value).startswith("context['v']['ids']: more than 32 members")


def bigint_ext(n: int) -> msgpack.ExtType:
    """How the codec stores an int beyond 64 bits: extension 1 around its bytes."""
    return msgpack.ExtType(1, n.to_bytes((n.bit_length() + 8) >> 3, "big", signed=True))


@pytest.mark.parametrize(
    "key",
    [bigint_ext, lambda n: tuple_ext([bigint_ext(n)])],
    ids=["big ints", "tuples"],
)
def test_a_blob_with_a_map_of_colliding_keys_is_refused(key):
    # msgpack cannot pack a dict with these keys: the map is written by hand.
    members = colliding_ints(2000)
    pairs = b"".join(msgpack.packb(key(m)) + msgpack.packb(i) for i, m in enumerate(members))
    inner = b"\xde" + len(members).to_bytes(2, "big") + pairs
    head = b"".join(msgpack.packb(field) for field in ["g", "t", None, False, [], 1000])
    data = b"\x81" + msgpack.packb("v") + inner
    blob = bytes([FORMAT_VERSION, 0x98]) + head + data + msgpack.packb([])
    with pytest.raises(StorageError, match="share one hash"):
        decode(blob)


def test_a_dict_of_colliding_keys_is_refused_at_save():
    with pytest.raises(SerializationError, match="keys of this dict share one hash"):
        encode({(k,): 1 for k in colliding_ints(100)})


def test_sets_and_maps_of_distinct_hashes_still_round_trip():
    value = {
        "set": set(range(100_000)),
        "tuple keys": {(i, str(i)): i for i in range(1000)},
        "int keys": {i: i for i in range(1000)},
        "a few colliding": {P, 2 * P, 3 * P, -1, -2},
    }
    assert decode(encode(value)).context.get("v") == value


# -- what is not a context value ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (msgpack.ExtType(5, b"\x00" * 8), "msgpack.ExtType"),
        (msgpack.Timestamp(1, 0), "msgpack.Timestamp"),
    ],
)
def test_msgpack_values_are_refused_at_save(value, name):
    # Before: ExtType(5, ...) came back as a datetime, Timestamp as something else.
    with pytest.raises(SerializationError) as info:
        encode({"inner": [value]})
    assert str(info.value).startswith(f"context['v']['inner'][0]: cannot store {name}")


def test_a_blob_holding_a_msgpack_timestamp_is_refused():
    blob = bytes([FORMAT_VERSION]) + msgpack.packb(
        ["g", "t", None, False, [], 1000, {"v": msgpack.Timestamp(1, 0)}, []]
    )
    with pytest.raises(StorageError, match="msgpack Timestamp"):
        decode(blob)


def test_a_lone_surrogate_is_refused_with_its_path():
    with pytest.raises(SerializationError) as info:
        encode({"name": ["ok", "bad \ud800"]})
    message = str(info.value)
    assert message.startswith("context['v']['name'][1]: a str that is not valid Unicode")


def test_a_lone_surrogate_in_the_chat_is_refused_naming_the_message():
    ctx = Context()
    ctx.add_user_message("fine")
    ctx.add_user_message("bad \udc00")
    with pytest.raises(SerializationError, match=r"^chat message 1: a str that is not valid"):
        encode_session(Session.new_from_task("s", "t", context=ctx))


def test_a_chat_timestamp_past_year_9999_is_a_storage_error():
    far = int((datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp() + 86_400) * 1_000_000)
    blob = bytes([FORMAT_VERSION]) + msgpack.packb(
        ["g", "t", None, False, [], 1000, {}, [0, "from the future", far]]
    )
    with pytest.raises(StorageError, match="chat timestamp"):
        decode(blob)
