"""Fuzz the session codec: mutated blobs must decode or raise StorageError, quickly, never crash.

    python fuzz/fuzz_codec.py                      # 1,000,000 blobs on the loaded implementation
    python fuzz/fuzz_codec.py --blobs 20000 --seed 7
    FLOWCORE_NO_EXTENSIONS=1 python fuzz/fuzz_codec.py   # the pure-Python implementation
    python fuzz/fuzz_codec.py --both               # both, agreeing on every blob (make fuzz)

Every blob is a real session blob (contexts holding every supported type, registered types,
chats) changed at random: bits flipped, bytes set, inserted, deleted or repeated, a length or an
extension code bumped, a cut, two blobs spliced. Each must decode to a session (which must then
encode again, or fail with SerializationError) or raise StorageError; anything else is a bug.
The blobs run in worker processes, in chunks with their own seeds, so that a crash (a signal)
names the chunk that caused it and can be replayed with ``--seed`` and ``--chunk``. A deep
section then checks values nested at and past the depth bound, and crafted blobs (deep, hash
colliding) that must be refused in well under a second. Prints figures; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

CHUNK = 20_000
SLOW = 0.5  # seconds: a blob of a few KB taking this long to decode is a failure


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def seed_contexts() -> list[dict[str, Any]]:
    """Contexts holding every kind of value the codec stores."""
    aware = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=5)))
    return [
        {},
        {"n": 1, "s": "text", "f": 1.5, "b": True, "none": None, "raw": b"\x00\xff"},
        {"big": 2**200, "neg": -(2**70), "dec": Decimal("-1.25E+3"), "u": UUID(int=7)},
        {"when": aware, "day": date(1, 1, 1), "naive": datetime(9999, 12, 31), "d": timedelta(-3)},
        {"t": (1, (2, (3,))), "s": {1, 2, 3}, "fs": frozenset({"a"}), "k": {(1, 2): "tuple key"}},
        {"colour": Colour.RED, "point": Point(1, 2), "points": [Point(i, -i) for i in range(5)]},
        {"nested": {"a": [{"b": [1, {"c": (2, frozenset({3}))}]}]}, "ints": {1: "one", 2: "two"}},
        {"list": list(range(50)), "text": "é" * 40, "deep": [[[[[["x"]]]]]]},
    ]


def seed_blobs() -> list[bytes]:
    from flowcore import ChatMessage, Context, MessageRole, Session
    from flowcore.codec import encode_session

    blobs = []
    sent = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)  # fixed: the same blobs every run
    for i, data in enumerate(seed_contexts()):
        ctx = Context(data, max_chat_messages=None if i % 2 else 5)
        for j in range(i):
            role = (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM)[j % 3]
            ctx.add_message(ChatMessage(role, f"message {j}", sent + timedelta(seconds=j)))
        session = Session.new_from_task(f"s{i}", "task", graph_id="g", context=ctx)
        session.history = ["a", "b"][: i % 3]
        blobs.append(encode_session(session))
    return blobs


def mutate(rng: random.Random, blob: bytes, others: list[bytes]) -> bytes:
    data = bytearray(blob)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        if not data:
            data = bytearray(rng.choice(others))
        i = rng.randrange(len(data))
        what = rng.randrange(9)
        if what == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif what == 1:
            data[i] = rng.randrange(256)
        elif what == 2:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif what == 3:
            del data[i : i + rng.randrange(1, 9)]
        elif what == 4:
            data[i:i] = data[i : i + rng.randrange(1, 17)] * rng.randrange(1, 5)
        elif what == 5:
            del data[i:]
        elif what == 6:  # a length or a code nudged
            data[i] = (data[i] + rng.choice((-1, 1, 0x10, -0x10))) % 256
        elif what == 7:  # an interesting byte: msgpack's type bytes
            data[i] = rng.choice((0xC1, 0xC7, 0xC8, 0xC9, 0xD4, 0xD8, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF))
        else:
            other = rng.choice(others)
            data[i:] = other[rng.randrange(len(other)) :]
    return bytes(data)


def run_chunk(seed: int, chunk: int, count: int) -> dict[str, Any]:
    """Decode ``count`` mutated blobs; the figures, and the failures (at most a few)."""
    from flowcore import SerializationError, StorageError
    from flowcore.codec import decode_session, encode_session, register_type

    register_type(Colour, name="fuzz.Colour")
    register_type(Point, name="fuzz.Point")
    blobs = seed_blobs()
    rng = random.Random(f"{seed}-{chunk}")
    outcomes = bytearray()  # D or R per blob: both implementations must agree on every one
    decoded = refused = 0
    slowest = 0.0
    failures: list[str] = []
    for n in range(count):
        blob = mutate(rng, rng.choice(blobs), blobs)
        started = time.perf_counter()
        try:
            session = decode_session(blob, session_id="fuzz", version=1)
        except StorageError:
            refused += 1
            outcomes += b"R"
        except Exception as exc:
            failures.append(f"blob {n} {blob.hex()}: decode raised {type(exc).__name__}: {exc}")
            continue
        else:
            decoded += 1
            outcomes += b"D"
            try:
                encode_session(session)
            except SerializationError:
                pass
            except Exception as exc:
                failures.append(f"blob {n} {blob.hex()}: encode raised {type(exc).__name__}")
        took = time.perf_counter() - started
        slowest = max(slowest, took)
        if took > SLOW:
            failures.append(f"blob {n} {blob.hex()}: took {took:.3f}s")
        if len(failures) >= 5:
            break
    return {
        "decoded": decoded,
        "refused": refused,
        "slowest": slowest,
        "failures": failures,
        "outcomes": hashlib.sha256(outcomes).hexdigest(),
    }


def deep_cases() -> list[str]:
    """Values at and past the depth bound, and crafted blobs: the failures found."""
    import msgpack

    from flowcore import SerializationError, Session, StorageError
    from flowcore.codec import FORMAT_VERSION, MAX_DEPTH, decode_session, encode_session

    failures = []

    def blob_of(value: Any) -> bytes:
        record = ["g", "t", None, False, [], 1000, {"v": value}, []]
        return bytes([FORMAT_VERSION]) + msgpack.packb(record)

    def timed(what: str, action: Any, expected: type[BaseException] | None) -> None:
        started = time.perf_counter()
        try:
            action()
        except BaseException as exc:
            if expected is None or not isinstance(exc, expected):
                failures.append(f"{what}: raised {type(exc).__name__}: {str(exc)[:200]}")
        else:
            if expected is not None:
                failures.append(f"{what}: did not raise {expected.__name__}")
        took = time.perf_counter() - started
        if took > SLOW:
            failures.append(f"{what}: took {took:.3f}s")

    def chain(kinds: str, depth: int) -> Any:
        wrap = {"l": lambda x: [x], "d": lambda x: {"k": x}, "t": lambda x: (x,)}
        value: Any = 0
        for i in range(depth):
            value = wrap[kinds[i % len(kinds)]](value)
        return value

    for kinds in ("l", "d", "t", "ldt", "tl"):
        ok = chain(kinds, MAX_DEPTH)
        session = Session.new_from_task("s", "t", context={"v": ok})
        timed(f"{kinds} x {MAX_DEPTH}", lambda session=session: encode_session(session), None)
        deep = Session.new_from_task("s", "t", context={"v": chain(kinds, MAX_DEPTH + 1)})
        timed(
            f"{kinds} x {MAX_DEPTH + 1}", lambda deep=deep: encode_session(deep), SerializationError
        )
    huge: Any = None
    for _ in range(20):
        for _ in range(1000):
            huge = [huge]
        huge = (huge,)
    crash = Session.new_from_task("s", "t", context={"v": huge})
    timed("20 tuples x 1,000 lists", lambda: encode_session(crash), SerializationError)

    planted: Any = None
    for _ in range(20):
        for _ in range(1000):
            planted = [planted]
        planted = msgpack.ExtType(2, msgpack.packb(planted))
    blob = blob_of(planted)
    timed(
        "planted 20 tuples x 1,000 lists",
        lambda: decode_session(blob, session_id="s", version=1),
        StorageError,
    )
    for width in (1, 2):
        nested = b"\xc0"
        for _ in range(5000):
            nested = msgpack.packb(msgpack.ExtType(2, b"\x91" * width + nested))
        bad = blob_of(msgpack.ExtType(2, nested))
        timed(
            f"5,000 nested tuple payloads ({width})",
            lambda bad=bad: decode_session(bad, session_id="s", version=1),
            StorageError,
        )

    p = 2**61 - 1
    members = [
        msgpack.ExtType(1, (p * (i + 1)).to_bytes(12, "big", signed=True)) for i in range(100_000)
    ]
    colliding = blob_of(msgpack.ExtType(3, msgpack.packb(members)))
    timed(
        f"set of 100,000 colliding ints ({len(colliding):,} bytes)",
        lambda: decode_session(colliding, session_id="s", version=1),
        StorageError,
    )
    return failures


def replay(seed: int, chunk: int, count: int) -> int:
    result = run_chunk(seed, chunk, count)
    print(result)
    return 1 if result["failures"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, help="replay this chunk only (after a crash)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--both", action="store_true", help="compiled, then pure Python")
    args = parser.parse_args()
    if args.chunk is not None:
        return replay(args.seed, args.chunk, CHUNK)
    if args.both:
        return both(args.blobs, args.seed, args.workers)

    import flowcore

    impl = "compiled" if flowcore.COMPILED else "pure Python"
    chunks = [
        (args.seed, i, min(CHUNK, args.blobs - i * CHUNK)) for i in range(-(-args.blobs // CHUNK))
    ]
    started = time.perf_counter()
    totals = {"decoded": 0, "refused": 0, "slowest": 0.0}
    digest = hashlib.sha256()
    failures: list[str] = []
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_chunk, *chunk): chunk for chunk in chunks}
        for future, chunk in futures.items():
            try:
                result = future.result()
            except Exception as exc:  # a worker that died: a crash
                failures.append(
                    f"chunk {chunk[1]} crashed the process ({type(exc).__name__}); replay it "
                    f"with: python fuzz/fuzz_codec.py --seed {chunk[0]} --chunk {chunk[1]}"
                )
                continue
            totals["decoded"] += result["decoded"]
            totals["refused"] += result["refused"]
            totals["slowest"] = max(totals["slowest"], result["slowest"])
            digest.update(result["outcomes"].encode())
            failures += result["failures"]
    took = time.perf_counter() - started
    done = totals["decoded"] + totals["refused"]
    print(
        f"flowcore codec fuzz ({impl}, seed {args.seed}): {done:,} mutated blobs in {took:.1f}s: "
        f"{totals['decoded']:,} decoded, {totals['refused']:,} refused with StorageError; "
        f"slowest {totals['slowest'] * 1e3:.2f} ms"
    )
    # The same seed gives the same blobs: both implementations must print the same digest.
    print(f"outcomes digest: {digest.hexdigest()[:16]}")
    deep = deep_cases_in_subprocess()
    failures += deep
    if failures:
        print(f"{len(failures)} failure(s):", *failures, sep="\n  ")
        return 1
    print("no failures")
    return 0


def both(blobs: int, seed: int, workers: int) -> int:
    """Run the fuzz on each implementation in a process of its own; their outcomes must agree."""
    digests = []
    for no_extensions in ("", "1"):
        env = {**os.environ, "FLOWCORE_NO_EXTENSIONS": no_extensions}
        command = [sys.executable, __file__, f"--blobs={blobs}", f"--seed={seed}"]
        done = subprocess.run(
            [*command, f"--workers={workers}"], env=env, capture_output=True, text=True
        )
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        digests.append(next(line for line in done.stdout.splitlines() if "digest" in line))
    if digests[0] != digests[1]:
        print("the compiled and pure-Python codecs disagree on some blob: replay a chunk on each")
        return 1
    print("both implementations agree on every blob")
    return 0


def deep_cases_in_subprocess() -> list[str]:
    """The deep cases, in a process of their own: a crash there is a failure, not the end."""
    done = subprocess.run(
        [sys.executable, __file__, "--deep-only"], capture_output=True, text=True, check=False
    )
    print(done.stdout, end="")
    if done.returncode != 0:
        return [f"deep cases exited with {done.returncode}: {done.stderr[-2000:]}"]
    return []


if __name__ == "__main__":
    if sys.argv[1:] == ["--deep-only"]:
        started = time.perf_counter()
        found = deep_cases()
        took = time.perf_counter() - started
        print(f"deep and crafted values: {len(found)} failure(s) in {took:.1f}s")
        for failure in found:
            print(f"  {failure}")
        sys.exit(1 if found else 0)
    sys.exit(main())
