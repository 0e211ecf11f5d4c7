"""`flowcore sessions show` on whatever a database holds: values at the edges of what can be
stored, blobs written by other software, and bugs, each through the real command.

Whatever it finds, the command prints the session or exits with status 1 and one line on stderr;
it never prints a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest

from flowcore import SerializationError, Session, open_storage
from flowcore.codec import encode_session, unregister_type

from .helpers import flowcore_command as flowcore
from .helpers import install_plugin


def assert_one_line(result: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 1, err
    assert out == ""
    assert err.startswith("flowcore: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


@pytest.fixture
def db(installed_plugins: Callable[..., None], tmp_path: Path) -> Path:
    installed_plugins("sql")
    return tmp_path / "claims.db"


def store(db: Path, *sessions: Session) -> None:
    async def save_all() -> None:
        async with open_storage(f"sqlite:///{db}") as storage:
            for session in sessions:
                await storage.save(session)

    asyncio.run(save_all())


def plant(db: Path, session_id: str, edit: Callable[[list[Any]], object]) -> None:
    """Store a session, then rewrite its blob as other software might have: ``edit`` changes
    the decoded record ``[graph_id, current_task_id, status_message, is_completed, history,
    max_chat_messages, data, chat]`` in place, and the row gets it back in format version 1."""
    store(db, Session.new_from_task(session_id, "intake"))
    with sqlite3.connect(db) as connection:
        (blob,) = connection.execute(
            "SELECT blob FROM flowcore_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        assert blob[0] == 1
        record = msgpack.unpackb(blob[1:], strict_map_key=False)
        edit(record)
        connection.execute(
            "UPDATE flowcore_sessions SET blob = ? WHERE id = ?",
            (b"\x01" + msgpack.packb(record), session_id),
        )
    connection.close()


def show(db: Path, session_id: str) -> tuple[int, str, str]:
    return flowcore("sessions", "show", session_id, "--storage", f"sqlite:///{db}", cwd=db.parent)


# -- values at the edges ---------------------------------------------------------------------------


def test_an_int_of_5000_digits_is_shown(db: Path) -> None:
    store(db, Session.new_from_task("huge", "intake", context={"n": 10**5000, "small": 7}))

    code, out, err = show(db, "huge")

    assert (code, err) == (0, "")
    context = json.loads(out)["context"]
    assert context == {"n": hex(10**5000), "small": 7}  # Python will not print it in decimal


def test_a_chat_timestamp_past_the_year_9999_is_one_line(db: Path) -> None:
    def far_future_chat(record: list[Any]) -> None:
        year_10000 = 253_402_300_800 * 1_000_000  # microseconds since 1970
        record[7] = [0, "hello", year_10000]

    plant(db, "far-future", far_future_chat)

    assert_one_line(show(db, "far-future"), "'far-future'")


def test_lists_nested_900_deep_are_one_line(db: Path) -> None:
    def deep_value(record: list[Any]) -> None:
        value: list[Any] = []
        for _ in range(900):
            value = [value]
        record[6]["deep"] = value

    plant(db, "deep", deep_value)

    assert_one_line(show(db, "deep"), "'deep'")


def deepest_storable() -> tuple[list[Any], int]:
    """A list nested as deep as the codec stores, and how many levels deep it is."""
    value: list[Any] = [1]
    levels = 1
    while levels < 10_000:
        deeper = [value]
        try:
            encode_session(Session.new_from_task("probe", "intake", context={"v": deeper}))
        except SerializationError:
            return value, levels
        value, levels = deeper, levels + 1
    raise AssertionError("the codec stores lists nested 10,000 deep")


def test_the_deepest_value_a_session_can_store_is_shown(db: Path) -> None:
    value, levels = deepest_storable()
    store(db, Session.new_from_task("deepest", "intake", context={"v": value}))

    code, out, err = show(db, "deepest")

    assert (code, err) == (0, "")
    shown = json.loads(out)["context"]["v"]
    for _ in range(levels - 1):
        shown = shown[0]
    assert shown == [1]


# -- a bug is still one line -----------------------------------------------------------------------

BUGGY_BACKEND = """
    import flowcore

    class Buggy(flowcore.InMemorySessionStorage):
        async def list_sessions(self, *, limit=None, after=None):
            return {}["the backend's own bug"]

    @flowcore.hookimpl
    def flowcore_register_storage(register):
        register("buggy", lambda url, **options: Buggy())
"""


@pytest.fixture
def buggy_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The environment of a flowcore that has a plugin whose backend has a bug."""
    home = install_plugin(
        monkeypatch,
        tmp_path,
        "acme-buggy",
        entry_points={"buggy": "acme_buggy"},
        modules={"acme_buggy": BUGGY_BACKEND},
    )
    path = os.pathsep.join([str(home), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, "FLOWCORE_LOAD_PLUGINS": "buggy"}


def test_an_unexpected_exception_is_one_line_naming_it_and_what_to_do(
    buggy_plugin: dict[str, str], tmp_path: Path
) -> None:
    result = flowcore("sessions", "list", "--storage", "buggy://", cwd=tmp_path, env=buggy_plugin)

    assert_one_line(
        result,
        'flowcore: unexpected KeyError: "the backend\'s own bug"; this is a bug in flowcore '
        "or in a plugin: please report it",
        "FLOWCORE_TRACEBACK=1",
    )


def test_FLOWCORE_TRACEBACK_prints_the_traceback_for_a_report(
    buggy_plugin: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = flowcore(
        "sessions",
        "list",
        "--storage",
        "buggy://",
        cwd=tmp_path,
        env={**buggy_plugin, "FLOWCORE_TRACEBACK": "1"},
    )

    assert (code, out) == (1, "")
    assert err.startswith("Traceback (most recent call last):")
    assert "in list_sessions" in err
    assert err.splitlines()[-1].startswith("flowcore: unexpected KeyError")


# -- types the application registers: --import -----------------------------------------------------

CLAIM_TYPES = """
    from dataclasses import dataclass
    from decimal import Decimal

    from flowcore.codec import register_type


    @dataclass
    class Money:
        amount: Decimal
        currency: str


    register_type(Money, name="claims.Money")
"""


@pytest.fixture
def app(db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An application module, claim_types, that registers a type; a session holds one."""
    (db.parent / "claim_types.py").write_text(textwrap.dedent(CLAIM_TYPES))
    monkeypatch.syspath_prepend(str(db.parent))
    monkeypatch.delitem(sys.modules, "claim_types", raising=False)
    claim_types = importlib.import_module("claim_types")
    try:
        money = claim_types.Money(Decimal("1200.50"), "EUR")
        store(db, Session.new_from_task("claim-7", "intake", context={"paid": money}))
    finally:
        unregister_type(claim_types.Money)  # only the command, with --import, knows it
    return db.parent


def test_import_registers_the_applications_types_before_the_session_is_decoded(
    app: Path, db: Path
) -> None:
    code, out, err = flowcore(
        "sessions",
        "show",
        "claim-7",
        "--storage",
        f"sqlite:///{db}",
        "--import",
        "claim_types",
        cwd=app,
    )

    assert (code, err) == (0, "")
    assert json.loads(out)["context"] == {"paid": {"amount": "1200.50", "currency": "EUR"}}


def test_without_import_the_unregistered_type_is_one_line_saying_to_import_it(
    app: Path, db: Path
) -> None:
    assert_one_line(
        show(db, "claim-7"),
        "Session 'claim-7' could not be decoded: the type 'claims.Money' is not registered",
        "--import MODULE",
    )


APP_STORAGE = """
    import flowcore

    STORAGE = flowcore.InMemorySessionStorage()


    class AppStorage:
        @flowcore.hookimpl
        def flowcore_register_storage(self, register):
            register("app", lambda url, **options: STORAGE)


    flowcore.register_plugin(AppStorage(), name="app-storage")
"""


def test_import_brings_in_a_storage_backend_the_application_registers(tmp_path: Path) -> None:
    (tmp_path / "app_storage.py").write_text(textwrap.dedent(APP_STORAGE))

    result = flowcore(
        "sessions", "list", "--storage", "app://", "--import", "app_storage", cwd=tmp_path
    )

    assert result == (0, "", "")


@pytest.mark.parametrize(
    ("module", "source", "fragment"),
    [
        ("no_such_module", None, "no module named 'no_such_module'"),
        ("broken_types", "raise RuntimeError('no settings')\n", "RuntimeError: no settings"),
        ("bad_syntax", "def (:\n", "importing 'bad_syntax' failed: SyntaxError"),
    ],
    ids=["missing", "raises", "syntax-error"],
)
def test_a_module_that_cannot_be_imported_is_one_line(
    app: Path, db: Path, module: str, source: str | None, fragment: str
) -> None:
    if source is not None:
        (app / f"{module}.py").write_text(source)

    result = flowcore(
        "sessions",
        "list",
        "--storage",
        f"sqlite:///{db}",
        "--import",
        "claim_types",
        "--import",
        module,
        cwd=app,
    )

    assert_one_line(result, fragment)


# -- read-only databases ---------------------------------------------------------------------------


def test_a_database_opened_with_mode_ro_is_read_and_never_written(db: Path) -> None:
    store(db, *(Session.new_from_task(i, "intake") for i in ("claim-1", "claim-2")))
    before = db.read_bytes()
    url = f"sqlite:///{db}?mode=ro"

    listed = flowcore("sessions", "list", "--storage", url, cwd=db.parent)
    shown = flowcore("sessions", "show", "claim-2", "--storage", url, cwd=db.parent)
    deleting = flowcore("sessions", "delete", "claim-1", "--storage", url, cwd=db.parent)

    assert listed == (0, "claim-1\nclaim-2\n", "")
    assert (shown[0], json.loads(shown[1])["id"]) == (0, "claim-2")
    assert_one_line(deleting, "read-only")
    assert db.read_bytes() == before


def test_a_missing_database_with_mode_ro_is_one_line_naming_how_to_create_it(
    db: Path,
) -> None:
    result = flowcore("sessions", "list", "--storage", f"sqlite:///{db}?mode=ro", cwd=db.parent)

    assert_one_line(result, f"there is no SQLite database at '{db}'")
    assert result[2].endswith(f"create it with: flowcore db migrate sqlite:///{db}\n")
    assert not db.exists()


def test_a_percent_encoded_path_names_the_file_flowcore_sql_opens(db: Path) -> None:
    spaced = db.with_name("my claims.db")
    store(spaced, Session.new_from_task("claim-1", "intake"))

    result = flowcore("sessions", "list", "--storage", "sqlite:///my%20claims.db", cwd=db.parent)

    assert result == (0, "claim-1\n", "")


def test_a_reader_that_stops_early_ends_the_command_quietly(db: Path) -> None:
    store(db, Session.new_from_task("long", "intake", context={"notes": "x" * 1_000_000}))
    env = {**os.environ, "FLOWCORE_LOAD_PLUGINS": "sql"}
    command = [sys.executable, "-m", "flowcore", "sessions", "show", "long"]

    with subprocess.Popen(
        [*command, "--storage", f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as shown:  # as `flowcore sessions show long | head -c 1` does
        assert shown.stdout is not None
        assert shown.stderr is not None
        assert shown.stdout.read(1) == b"{"
        shown.stdout.close()
        err = shown.stderr.read()

    assert (shown.returncode, err) == (0, b"")
