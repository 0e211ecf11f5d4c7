"""session_as_json: every storable value turns into JSON, whatever its size or shape."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from flowcore import Session, session_as_json


def view(**values: object) -> dict:
    session = Session.new_from_task("s", "t", context=values)
    out = session_as_json(session)
    json.dumps(out, allow_nan=False)  # plain JSON: no NaN, nothing json cannot write
    return out["context"]


def test_an_int_too_long_for_decimal_text_is_shown_in_hex():
    huge = 10**5000  # str() of it raises ValueError (Python's limit on int digits)
    assert view(n=huge)["n"] == hex(huge)
    assert view(n=2**100)["n"] == 2**100  # long but writable ints stay numbers


def test_values_json_has_no_type_for_become_text():
    out = view(
        nan=float("nan"),
        inf=float("-inf"),
        when=datetime(2030, 1, 2, tzinfo=timezone.utc),
        price=Decimal("1E+999999"),
        raw=b"\x00\xff",
        pair=(1, 2),
        keys={(1, 2): "tuple key", 3: "int key"},
    )
    assert out == {
        "nan": "nan",
        "inf": "-inf",
        "when": "2030-01-02T00:00:00+00:00",
        "price": "1E+999999",
        "raw": "00ff",
        "pair": [1, 2],
        "keys": {"[1, 2]": "tuple key", "3": "int key"},
    }


def test_the_session_fields_and_chat_are_shown():
    session = Session.new_from_task("s-1", "ask", graph_id="claims", context={"a": 1})
    session.context.add_user_message("hello")
    out = session_as_json(session)
    assert out["id"] == "s-1"
    assert out["graph_id"] == "claims"
    assert out["current_task_id"] == "ask"
    assert out["version"] == 0
    assert [m["content"] for m in out["chat"]] == ["hello"]
    assert out["chat"][0]["role"] == "user"
