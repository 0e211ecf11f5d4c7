"""The flowcore command beyond `plugins`: --version, demo, graph, sessions and db migrate.

Every failure a user can fix exits with status 1 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest

import flowcore
from examples.claim_demo import build_graph
from flowcore import (
    Context,
    FanOutTask,
    Graph,
    GraphBuilder,
    InMemorySessionStorage,
    NextAction,
    Session,
    TaskResult,
    hookimpl,
    open_storage,
    register_plugin,
    session_as_json,
    task,
)
from flowcore._cli import main

from .helpers import Step, UnlistedPlugin

ROOT = Path(__file__).resolve().parent.parent


@task("intake")
def intake(ctx):
    return TaskResult.move_to_next()


@task("fast_track")
def fast_track(ctx):
    return TaskResult("ok", NextAction.End)


@task("adjuster")
def adjuster(ctx):
    return TaskResult("ok", NextAction.End)


def is_small(ctx):
    return ctx.get("amount", 0) < 500


ROUTING = (
    GraphBuilder("routing")
    .add_task(intake)
    .add_task(fast_track)
    .add_task(adjuster)
    .add_conditional_edge("intake", is_small, "fast_track", "adjuster")
)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 1
    assert out == ""
    assert err.startswith("flowcore: ")
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


# -- --version and demo ----------------------------------------------------------------------------


def test_version_names_the_release_and_whether_the_compiled_core_is_active(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"flowcore {flowcore.__version__} (")
    assert out.count("\n") == 1
    assert ("compiled core: active" in out) is flowcore.COMPILED


def test_demo_runs_the_claim_demo_of_the_source_tree_with_its_arguments():
    done = subprocess.run(
        [sys.executable, "-m", "flowcore", "demo", "--mermaid"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT / "docs",  # found through the flowcore package, not the current directory
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == build_graph().to_mermaid()


def test_demo_says_where_to_find_it_when_flowcore_is_installed_without_its_source(
    capsys, monkeypatch, tmp_path
):
    monkeypatch.setattr(flowcore, "__file__", str(tmp_path / "site" / "flowcore" / "__init__.py"))
    monkeypatch.chdir(tmp_path)

    code, out, err = run_cli(capsys, "demo")

    assert_one_line_error(code, out, err, "examples/claim_demo.py", "make demo")


# -- graph -----------------------------------------------------------------------------------------


def test_graph_prints_the_mermaid_chart_of_a_graph_factory(capsys):
    code, out, _ = run_cli(capsys, "graph", f"{__name__}:routing_graph")

    assert code == 0
    assert out == routing_graph().to_mermaid()


def routing_graph():
    return ROUTING.build()


def graph_with_odd_ids():
    graph = Graph("odd")
    graph.add_task(Step('say "hi" <now> & go'))
    graph.add_edge('say "hi" <now> & go', "gone")
    graph.add_edge("ghost", 'say "hi" <now> & go')
    return graph


@pytest.mark.parametrize("factory", [routing_graph, graph_with_odd_ids])
def test_without_fan_outs_the_chart_is_the_graphs_to_mermaid(capsys, factory):
    assert run_cli(capsys, "graph", f"{__name__}:{factory.__name__}") == (
        0,
        factory().to_mermaid(),
        "",
    )


@task("fraud_check")
async def fraud_check(ctx):
    return TaskResult("passed")


@task("coverage_check")
async def coverage_check(ctx):
    return TaskResult("passed")


@task("policy_lookup")
def policy_lookup(ctx):
    return TaskResult("found")


CHECKS = (
    GraphBuilder("checks")
    .add_task(
        FanOutTask(
            "checks",
            [
                fraud_check,
                FanOutTask("coverage", [coverage_check, policy_lookup], prefix="coverage"),
            ],
        )
    )
    .add_task(fast_track)
    .add_edge("checks", "fast_track")
)


def test_graph_as_text_lists_the_children_of_each_fan_out(capsys):
    code, out, _ = run_cli(capsys, "graph", f"{__name__}:CHECKS", "--format", "text")

    assert code == 0
    assert out == (
        "graph checks version 1 (2 tasks, start: checks)\n"
        "  checks (start, fan-out)\n"
        "      runs fraud_check\n"
        "      runs coverage (fan-out)\n"
        "          runs coverage_check\n"
        "          runs policy_lookup\n"
        "      -> fast_track\n"
        "  fast_track\n"
        "      (no outgoing edge)\n"
    )


def test_the_mermaid_chart_draws_the_children_of_each_fan_out(capsys):
    code, out, _ = run_cli(capsys, "graph", f"{__name__}:CHECKS")

    assert code == 0
    assert out == (
        "flowchart TD\n"
        '    t0(["checks"])\n'
        '    t0_0[["fraud_check"]]\n'
        '    t0_1[["coverage"]]\n'
        '    t0_1_0[["coverage_check"]]\n'
        '    t0_1_1[["policy_lookup"]]\n'
        '    t1["fast_track"]\n'
        "    t0 --> t1\n"
        "    t0 -.-> t0_0\n"
        "    t0 -.-> t0_1\n"
        "    t0_1 -.-> t0_1_0\n"
        "    t0_1 -.-> t0_1_1\n"
    )


def test_the_claim_demo_chart_shows_its_checks_running_together(capsys):
    code, out, _ = run_cli(capsys, "graph", "examples.claim_demo:build_graph")

    assert code == 0
    assert out == build_graph().to_mermaid()
    lines = out.splitlines()
    checks = lines.index('    t4["checks"]')
    assert lines[checks + 1 : checks + 3] == [
        '    t4_0[["fraud_check"]]',
        '    t4_1[["coverage_check"]]',
    ]
    assert lines[-2:] == ["    t4 -.-> t4_0", "    t4 -.-> t4_1"]


def test_graph_as_text_lists_each_task_and_its_edges_with_their_conditions(capsys):
    code, out, _ = run_cli(capsys, "graph", f"{__name__}:ROUTING", "--format", "text")

    assert code == 0
    assert out == (
        "graph routing version 1 (3 tasks, start: intake)\n"
        "  intake (start)\n"
        "      -> fast_track  if is_small\n"
        "      -> adjuster  otherwise\n"
        "  fast_track\n"
        "      (no outgoing edge)\n"
        "  adjuster\n"
        "      (no outgoing edge)\n"
    )


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("examples.claim_demo", "is not MODULE:ATTR"),
        ("no_such_module:graph", "no module named 'no_such_module'"),
        ("examples.claim_demo:no_such_graph", "has no attribute 'no_such_graph'"),
        ("examples.claim_demo:GRAPH_ID", "is a str, not a flowcore Graph"),
    ],
)
def test_graph_reports_a_target_it_cannot_draw_in_one_line(capsys, target, fragment):
    assert_one_line_error(*run_cli(capsys, "graph", target), fragment)


def graph_for(tenant):
    return ROUTING


def graph_from_settings():
    raise KeyError("CLAIMS_DB_URL")


def builder_with_a_dangling_edge():
    return GraphBuilder("broken").add_task(intake).add_edge("intake", "nowhere")


@pytest.mark.parametrize(
    ("attribute", "fragment"),
    [
        (
            "graph_for",
            "'{target}' cannot be called without arguments (missing a required argument: "
            "'tenant'); name a Graph, a GraphBuilder, or a function that needs no arguments",
        ),
        ("graph_from_settings", "calling '{target}' failed: KeyError: 'CLAIMS_DB_URL'"),
        (
            "builder_with_a_dangling_edge",
            "building the graph of '{target}' failed: InvalidEdge: ",
        ),
    ],
    ids=["needs-arguments", "raises", "build-fails"],
)
def test_graph_reports_a_factory_that_fails_in_one_line_naming_it(capsys, attribute, fragment):
    target = f"{__name__}:{attribute}"

    code, out, err = run_cli(capsys, "graph", target)

    assert_one_line_error(code, out, err, fragment.format(target=target))


# -- sessions on a storage that can list -----------------------------------------------------------


class SharedMemory:
    """A plugin serving shared://, one in-memory storage that every open_storage returns."""

    def __init__(self) -> None:
        self.storage = InMemorySessionStorage()

    @hookimpl
    def flowcore_register_storage(self, register):
        register("shared", lambda url, **options: self.storage)

    def add(self, *sessions: Session) -> None:
        for session in sessions:
            asyncio.run(self.storage.save(session))


@pytest.fixture
def shared() -> SharedMemory:
    plugin = SharedMemory()
    register_plugin(plugin, name="shared-memory")
    plugin.add(*(Session.new_from_task(i, "intake") for i in ("claim-3", "claim-1", "claim-2")))
    return plugin


def test_sessions_list_prints_the_ids_sorted_one_a_line(capsys, shared):
    assert run_cli(capsys, "sessions", "list", "--storage", "shared://") == (
        0,
        "claim-1\nclaim-2\nclaim-3\n",
        "",
    )


def test_sessions_list_pages_with_limit_and_after_and_prints_json_on_request(capsys, shared):
    args = ("sessions", "list", "--storage", "shared://")
    assert run_cli(capsys, *args, "--limit", "2")[1] == "claim-1\nclaim-2\n"
    assert run_cli(capsys, *args, "--after", "claim-2")[1] == "claim-3\n"
    assert json.loads(run_cli(capsys, *args, "--json", "--limit", "1")[1]) == ["claim-1"]


def test_the_storage_url_may_come_from_FLOWCORE_STORAGE(capsys, shared, monkeypatch):
    monkeypatch.setenv("FLOWCORE_STORAGE", "shared://")

    assert run_cli(capsys, "sessions", "list", "--limit", "1")[1] == "claim-1\n"


def test_without_a_storage_url_the_command_line_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("FLOWCORE_STORAGE", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["sessions", "list"])

    assert exited.value.code == 2
    assert "--storage URL is required (or set FLOWCORE_STORAGE)" in capsys.readouterr().err


def test_session_ids_in_messages_are_quoted_short_and_on_one_line(capsys, shared):
    shared.add(Session.new_from_task("line\nbreak", "intake"))
    long_id = "x" * 10_000

    assert run_cli(capsys, "sessions", "delete", "line\nbreak", "--storage", "shared://") == (
        0,
        "deleted 'line\\nbreak'\n",
        "",
    )
    assert_one_line_error(
        *run_cli(capsys, "sessions", "show", long_id, "--storage", "shared://"),
        f"no session '{'x' * 100}…' (10,000 characters) in shared://",
    )


def test_a_backend_without_listing_or_expiry_says_so_in_one_line(capsys):
    register_plugin(UnlistedPlugin())

    assert_one_line_error(
        *run_cli(capsys, "sessions", "list", "--storage", "unlisted://"),
        "the unlisted:// backend (Unlisted) cannot list sessions",
        "flowcore sessions show ID",
    )
    assert_one_line_error(
        *run_cli(capsys, "sessions", "cleanup", "--storage", "unlisted://"),
        "does not expire sessions",
    )
    assert_one_line_error(
        *run_cli(capsys, "db", "migrate", "unlisted://"), "has no schema to migrate"
    )


# -- sessions and db migrate on SQLite (flowcore-sql) ----------------------------------------------


@pytest.fixture
def sqlite_url(installed_plugins, tmp_path) -> str:
    installed_plugins("sql")
    return f"sqlite:///{tmp_path / 'sessions.db'}"


def store(url: str, *sessions: Session, **options: object) -> None:
    async def save_all() -> None:
        async with open_storage(url, **options) as storage:
            for session in sessions:
                await storage.save(session)

    asyncio.run(save_all())


def stored_ids(url: str, *session_ids: str) -> list[str]:
    async def load() -> list[str]:
        async with open_storage(url) as storage:
            return [i for i in session_ids if await storage.get(i) is not None]

    return asyncio.run(load())


def test_db_migrate_creates_the_tables_then_finds_nothing_to_do(capsys, sqlite_url):
    code, out, _ = run_cli(capsys, "db", "migrate", sqlite_url)
    assert code == 0
    assert out.startswith("applied migration")
    assert out.endswith(f" to {sqlite_url}\n")

    assert run_cli(capsys, "db", "migrate", sqlite_url) == (0, f"{sqlite_url} is up to date\n", "")


def test_db_migrate_takes_the_url_from_FLOWCORE_STORAGE_too(capsys, sqlite_url, monkeypatch):
    monkeypatch.setenv("FLOWCORE_STORAGE", sqlite_url)

    code, out, _ = run_cli(capsys, "db", "migrate")

    assert code == 0
    assert out.startswith("applied migration")
    assert out.endswith(f" to {sqlite_url}\n")
    assert run_cli(capsys, "sessions", "list") == (0, "", "")  # the same database


def test_db_migrate_without_a_url_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("FLOWCORE_STORAGE", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["db", "migrate"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "flowcore: error: db migrate: URL is required (or set FLOWCORE_STORAGE)\n"


def test_sessions_show_decodes_the_context_and_chat_history_to_json(capsys, sqlite_url):
    ctx = Context(
        {"amount": Decimal("1200.50"), "filed": date(2024, 5, 1), "tags": {"car", "rear"}}
    )
    ctx.add_user_message("My bumper is cracked.")
    ctx.add_assistant_message("How much is the repair?")
    session = Session.new_from_task("claim-7", "gather_details", graph_id="claims", context=ctx)
    session.history.append("intake")
    store(sqlite_url, session)

    code, out, _ = run_cli(capsys, "sessions", "show", "claim-7", "--storage", sqlite_url)

    assert code == 0
    shown = json.loads(out)
    chat = shown.pop("chat")
    assert shown == {
        "id": "claim-7",
        "graph_id": "claims",
        "graph_version": 1,
        "version": 1,
        "current_task_id": "gather_details",
        "status_message": None,
        "is_completed": False,
        "wake_at": None,
        "history": ["intake"],
        "context": {"amount": "1200.50", "filed": "2024-05-01", "tags": ["car", "rear"]},
        "max_chat_messages": 1000,
    }
    assert [(m["role"], m["content"]) for m in chat] == [
        ("user", "My bumper is cracked."),
        ("assistant", "How much is the repair?"),
    ]
    assert chat[0]["timestamp"].endswith("+00:00")


class Severity(enum.Enum):
    HIGH = "high"


@dataclass
class LineItem:
    sku: str
    price: Decimal


def test_show_turns_every_storable_value_into_readable_json():
    session = Session.new_from_task(
        "s1",
        "intake",
        context={
            "severity": Severity.HIGH,
            "item": LineItem("bumper", Decimal("120.00")),
            "by_year": {2024: (1, 2), None: frozenset({"b", "a"})},
            "raw": b"\x00\xff",
            "wait": timedelta(days=1, hours=2),
            "at": datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc),
            "ref": UUID(int=1),
            "ratio": float("nan"),
            "big": 2**70,
        },
    )

    assert session_as_json(session)["context"] == {
        "severity": "high",
        "item": {"sku": "bumper", "price": "120.00"},
        "by_year": {"2024": [1, 2], "null": ["a", "b"]},
        "raw": "00ff",
        "wait": "1 day, 2:00:00",
        "at": "2024-05-01T09:30:00+00:00",
        "ref": "00000000-0000-0000-0000-000000000001",
        "ratio": "nan",
        "big": 2**70,
    }


def test_sessions_delete_removes_the_sessions_and_reports_unknown_ids(capsys, sqlite_url):
    store(sqlite_url, *(Session.new_from_task(i, "intake") for i in ("a", "b", "c")))

    assert run_cli(capsys, "sessions", "delete", "a", "b", "--storage", sqlite_url) == (
        0,
        "deleted 'a'\ndeleted 'b'\n",
        "",
    )
    assert stored_ids(sqlite_url, "a", "b", "c") == ["c"]

    code, out, err = run_cli(capsys, "sessions", "delete", "c", "zzz", "--storage", sqlite_url)
    assert out == "deleted 'c'\n"
    assert_one_line_error(code, "", err, "no session 'zzz' in ")


def test_sessions_cleanup_deletes_the_expired_sessions(capsys, sqlite_url):
    store(sqlite_url, Session.new_from_task("short-lived", "intake"), ttl=0.001)
    store(sqlite_url, Session.new_from_task("kept", "intake"))
    time.sleep(0.01)

    code, out, _ = run_cli(capsys, "sessions", "cleanup", "--storage", sqlite_url)

    assert (code, out) == (0, "deleted 1 expired session\n")
    assert stored_ids(sqlite_url, "short-lived", "kept") == ["kept"]


def test_sessions_list_on_sqlite(capsys, sqlite_url):
    store(sqlite_url, *(Session.new_from_task(i, "intake") for i in ("b", "a")))

    assert run_cli(capsys, "sessions", "list", "--storage", sqlite_url) == (0, "a\nb\n", "")


def test_an_unknown_session_is_one_line_naming_it_and_how_to_list(capsys, sqlite_url):
    store(sqlite_url, Session.new_from_task("a", "intake"))

    assert_one_line_error(
        *run_cli(capsys, "sessions", "show", "nope", "--storage", sqlite_url),
        "no session 'nope' in sqlite:///",
        "flowcore sessions list --storage URL",
    )


def test_a_missing_sqlite_file_is_not_created_by_a_command_that_reads(capsys, sqlite_url):
    assert_one_line_error(
        *run_cli(capsys, "sessions", "show", "a", "--storage", sqlite_url),
        "there is no SQLite database at",
        f"flowcore db migrate {sqlite_url}",
    )
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sessions.db", "'sessions.db' is not a storage URL"),
        ("cassandra://db/claims", "No storage backend for scheme 'cassandra'"),
        ("postgresql://app:s3cret@127.0.0.1:1/claims", "Could not connect"),
    ],
)
def test_bad_urls_and_unreachable_databases_are_one_line(capsys, installed_plugins, url, fragment):
    installed_plugins("sql")

    code, out, err = run_cli(capsys, "sessions", "show", "a", "--storage", url)

    assert_one_line_error(code, out, err, fragment)
    assert "s3cret" not in err


def test_the_installed_command_prints_no_traceback(tmp_path):
    env = {**os.environ, "FLOWCORE_LOAD_PLUGINS": "sql"}

    done = subprocess.run(
        [sys.executable, "-m", "flowcore", "sessions", "list", "--storage", "sqlite:///none.db"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("flowcore: there is no SQLite database at 'none.db'")
    assert done.stderr.count("\n") == 1
