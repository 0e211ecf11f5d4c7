"""LangGraph's cases.

One step per request: a ``StateGraph`` of 3 nodes in a ring, each returning ``{"last": name}``,
compiled with a checkpointer and ``interrupt_after`` every node, so that each
``graph.invoke(None, config)`` resumes the thread named in ``config``, runs exactly one node and
stops. The thread is started (its first node run) before timing. Checkpointers:
``InMemorySaver``, ``SqliteSaver`` and ``PostgresSaver``, each with its default settings.
A whole run: the same 3 nodes in a line to ``END``, compiled without a checkpointer, one
``invoke`` with the initial state.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from importlib.metadata import version
from typing import Any, TypedDict
from urllib.parse import quote

from benchmarks.peers.harness import Case, Skipped
from benchmarks.peers.timing import timed_sync

LIBRARY = "LangGraph"
NODES = ("t0", "t1", "t2")


class State(TypedDict):
    last: str | None


def _node(name: str) -> Any:
    def run(state: State) -> dict[str, str]:
        return {"last": name}

    return run


def _graph(ring: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    for name in NODES:
        graph.add_node(name, _node(name))
    graph.add_edge(START, "t0")
    graph.add_edge("t0", "t1")
    graph.add_edge("t1", "t2")
    graph.add_edge("t2", "t0" if ring else END)
    return graph


def _step_case(workload: str, how: str, checkpointer: Any, close: Any) -> Case:
    app = _graph(ring=True).compile(checkpointer=checkpointer, interrupt_after=list(NODES))
    config: dict[str, Any] = {}

    def start() -> None:
        config["configurable"] = {"thread_id": uuid.uuid4().hex}
        app.invoke({"last": None}, config)  # starts the thread: runs t0, then stops
        for _ in range(3):
            app.invoke(None, config)
        snapshot = app.get_state(config)
        assert snapshot.values["last"] == "t0", snapshot.values
        assert snapshot.next == ("t1",), snapshot.next

    return Case(
        workload,
        LIBRARY,
        version("langgraph"),
        how,
        start=start,
        run=timed_sync(lambda: app.invoke(None, config)),
        close=close,
    )


def _whole_run_case() -> Case:
    app = _graph(ring=False).compile()

    def start() -> None:
        assert app.invoke({"last": None}) == {"last": "t2"}

    return Case(
        "whole-run",
        LIBRARY,
        version("langgraph"),
        "one `invoke`, no checkpointer",
        start=start,
        run=timed_sync(lambda: app.invoke({"last": None})),
    )


def cases(sqlite_dir: str, postgres: dict[str, str] | None) -> tuple[list[Case], list[Skipped]]:
    try:
        from langgraph.checkpoint.memory import InMemorySaver
    except ImportError:
        reason = "langgraph is not installed (`make bench-peers` installs it)"
        workloads = ("step-memory", "step-sqlite", "step-postgres", "whole-run")
        return [], [Skipped(w, LIBRARY, reason) for w in workloads]
    out = [
        _step_case("step-memory", "`InMemorySaver`", InMemorySaver(), lambda: None),
        _whole_run_case(),
    ]
    skipped = []

    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        skipped.append(Skipped("step-sqlite", LIBRARY, "langgraph-checkpoint-sqlite missing"))
    else:
        connection = sqlite3.connect(f"{sqlite_dir}/langgraph.db", check_same_thread=False)
        saver = SqliteSaver(connection)
        saver.setup()
        package = "langgraph-checkpoint-sqlite"
        how = f"`SqliteSaver` ({package} {version(package)})"
        out.append(_step_case("step-sqlite", how, saver, connection.close))

    if postgres is None:
        skipped.append(Skipped("step-postgres", LIBRARY, "PostgreSQL is not reachable"))
        return out, skipped
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError:
        skipped.append(Skipped("step-postgres", LIBRARY, "langgraph-checkpoint-postgres missing"))
        return out, skipped
    stack = contextlib.ExitStack()
    # The saver's tables go to the run's own schema, dropped at the end.
    separator = "&" if "?" in postgres["url"] else "?"
    options = quote(f"-csearch_path={postgres['schema']}")
    saver = stack.enter_context(
        PostgresSaver.from_conn_string(f"{postgres['url']}{separator}options={options}")
    )
    saver.setup()
    package = "langgraph-checkpoint-postgres"
    how = f"`PostgresSaver` on psycopg ({package} {version(package)})"
    out.append(_step_case("step-postgres", how, saver, stack.close))
    return out, skipped
