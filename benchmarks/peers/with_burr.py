"""Apache Burr's cases.

One step per request, as a web handler serves it: build the ``Application`` for the run's
``app_id`` with ``initialize_from(persister, resume_at_next_action=True, ...)`` (which loads the
run's last saved state and position) and ``with_state_persister(persister)``, then
``app.step()``: one action of a ring of 3, each writing ``last``; the persister saves after it.
Persisters: ``InMemoryPersister``, ``SQLitePersister`` and the psycopg2 ``PostgreSQLPersister``.
A whole run: build an application at ``t0`` with the initial state, ``app.run(halt_after=["t2"])``
through the 3 actions in a line, no persister.
"""

from __future__ import annotations

import uuid
from importlib.metadata import version
from typing import Any

from benchmarks.peers.harness import Case, Skipped
from benchmarks.peers.timing import timed_sync

LIBRARY = "Burr"
NODES = ("t0", "t1", "t2")


def _actions() -> dict[str, Any]:
    from burr.core import State, action

    def make(name: str) -> Any:
        @action(reads=[], writes=["last"])
        def run(state: State) -> State:
            return state.update(last=name)

        return run

    return {name: make(name) for name in NODES}


def _step_case(workload: str, how: str, persister: Any, close: Any) -> Case:
    from burr.core import ApplicationBuilder

    actions = _actions()
    current: dict[str, str] = {}

    def request() -> Any:
        app = (
            ApplicationBuilder()
            .with_actions(**actions)
            .with_transitions(("t0", "t1"), ("t1", "t2"), ("t2", "t0"))
            .initialize_from(
                persister,
                resume_at_next_action=True,
                default_state={"last": None},
                default_entrypoint="t0",
            )
            .with_state_persister(persister)
            .with_identifiers(app_id=current["app_id"], partition_key="peers")
            .build()
        )
        return app.step()

    def start() -> None:
        current["app_id"] = uuid.uuid4().hex
        for _ in range(3):
            ran, _, state = request()
        assert (ran.name, state["last"]) == ("t2", "t2"), (ran.name, state["last"])
        loaded = persister.load("peers", current["app_id"])
        assert loaded["position"] == "t2", loaded["position"]

    return Case(
        workload,
        LIBRARY,
        version("apache-burr"),
        how,
        start=start,
        run=timed_sync(request),
        close=close,
    )


def _whole_run_case() -> Case:
    from burr.core import ApplicationBuilder

    actions = _actions()

    def whole_run() -> Any:
        app = (
            ApplicationBuilder()
            .with_actions(**actions)
            .with_transitions(("t0", "t1"), ("t1", "t2"))
            .with_state(last=None)
            .with_entrypoint("t0")
            .build()
        )
        return app.run(halt_after=["t2"])

    def start() -> None:
        ran, _, state = whole_run()
        assert (ran.name, state["last"], state["__SEQUENCE_ID"]) == ("t2", "t2", 2)

    return Case(
        "whole-run",
        LIBRARY,
        version("apache-burr"),
        "build the application + `run(halt_after=['t2'])`, no persister",
        start=start,
        run=timed_sync(whole_run),
    )


def cases(sqlite_dir: str, postgres: dict[str, str] | None) -> tuple[list[Case], list[Skipped]]:
    try:
        from burr.core.persistence import InMemoryPersister, SQLitePersister
    except ImportError:
        reason = "apache-burr is not installed (`make bench-peers` installs it)"
        workloads = ("step-memory", "step-sqlite", "step-postgres", "whole-run")
        return [], [Skipped(w, LIBRARY, reason) for w in workloads]
    sqlite = SQLitePersister.from_values(f"{sqlite_dir}/burr.db")
    sqlite.initialize()
    out = [
        _step_case(
            "step-memory",
            "app built per request, `InMemoryPersister`",
            InMemoryPersister(),
            lambda: None,
        ),
        _step_case(
            "step-sqlite",
            "app built per request, `SQLitePersister` (sqlite3's defaults)",
            sqlite,
            sqlite.cleanup,
        ),
        _whole_run_case(),
    ]
    if postgres is None:
        return out, [Skipped("step-postgres", LIBRARY, "PostgreSQL is not reachable")]
    try:
        import psycopg2
        from burr.integrations.persisters.b_psycopg2 import PostgreSQLPersister
    except ImportError:
        return out, [Skipped("step-postgres", LIBRARY, "psycopg2 is not installed")]
    # The persister's table goes to the run's own schema, dropped at the end.
    connection = psycopg2.connect(postgres["url"], options=f"-csearch_path={postgres['schema']}")
    persister = PostgreSQLPersister(connection)
    persister.initialize()
    how = "app built per request, psycopg2 `PostgreSQLPersister`"
    out.append(_step_case("step-postgres", how, persister, connection.close))
    return out, []
