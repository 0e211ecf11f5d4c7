"""Graph (tasks and edges) and GraphBuilder (the same, fluent, checked by build())."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flowcore._context import Context
from flowcore._engine import held, run_step
from flowcore._errors import GraphError, InvalidEdge, TaskNotFound
from flowcore._fanout import FanOutTask
from flowcore._kernel import OutEdges, Predicate, StepRun, find_next_task
from flowcore._migrations import Migration, check_graph_version, check_owner, migrate
from flowcore._observers import NO_OBSERVERS
from flowcore._session import Session
from flowcore._task import RetryPolicy, Task
from flowcore._values import ExecutionResult

__all__ = ["Graph", "GraphBuilder"]


def _check_id(value: object, what: str) -> str:
    if type(value) is not str or not value:
        raise TypeError(f"{what} must be a non-empty str, got {type(value).__name__}: {value!r}")
    return value


def _check_limit(value: Any, what: str, *, integer: bool = False) -> Any:
    if value is None:
        return None
    allowed: tuple[type, ...] = (int,) if integer else (int, float)
    if type(value) not in allowed or not math.isfinite(value) or value <= 0:
        kind = "an int" if integer else "a number"
        raise ValueError(f"{what} must be None or {kind} > 0, got {value!r}")
    return value


def _check_task(task: object) -> Task:
    if not isinstance(task, Task):
        raise TypeError(
            f"add_task takes a flowcore.Task (a subclass, or a function decorated with @task), "
            f"got {type(task).__name__}"
        )
    if type(task).run is Task.run and "run" not in getattr(task, "__dict__", {}):
        raise TypeError(f"{type(task).__qualname__} must define run(self, ctx)")
    task_id = _check_id(task.id, f"The id of {type(task).__qualname__}")
    if task.timeout is not None:
        _check_limit(task.timeout, f"The timeout of task '{task_id}'")
    if task.retry is not None and not isinstance(task.retry, RetryPolicy):
        raise TypeError(
            f"The retry of task '{task_id}' must be a RetryPolicy, got {type(task.retry).__name__}"
        )
    return task


class Graph:
    """Tasks joined by edges. The first task added is the start task.

    ``task_timeout`` (seconds) applies to each async task without a timeout of its own;
    ``max_steps`` bounds how many tasks one step may run. None disables either.
    ``version`` (1, 2, ...) is the version of the workflow: raise it when a change would strand
    stored sessions, and register the migrations that bring them up (:meth:`add_migration`).
    Edges are not checked as they are added (use GraphBuilder for that).
    """

    def __init__(
        self,
        id: str,
        *,
        task_timeout: float | None = 300.0,
        max_steps: int | None = 10_000,
        version: int = 1,
    ) -> None:
        self.id = _check_id(id, "Graph id")
        self.task_timeout: float | None = _check_limit(task_timeout, "task_timeout")
        self.max_steps: int | None = _check_limit(max_steps, "max_steps", integer=True)
        self.version: int = check_graph_version(version, "Graph version")
        # from_version -> fn(session) bringing a session to from_version + 1.
        self._migrations: dict[int, Migration] = {}
        self._tasks: dict[str, Task] = {}
        self._start_task_id: str | None = None
        # Every edge as added: (from_id, to_id, predicate of a "yes" branch or None, is a "no").
        self._edges: list[tuple[str, str, Predicate | None, bool]] = []
        # Per source task, its edges as the kernel reads them (rebuilt as edges are added).
        self._out_edges: dict[str, OutEdges] = {}

    # -- building -------------------------------------------------------------------------------

    def add_task(self, task: Task) -> Graph:
        """Add a task (one with the same id is replaced). The first task added is the start task."""
        task_id = _check_task(task).id
        self._tasks[task_id] = task
        if self._start_task_id is None:
            self._start_task_id = task_id
        return self

    def add_edge(self, from_id: str, to_id: str) -> Graph:
        """After ``from_id``, go to ``to_id`` (unless a conditional edge from it is taken)."""
        _check_id(from_id, "add_edge from_id")
        self._edges.append((from_id, _check_id(to_id, "add_edge to_id"), None, False))
        self._index_edges_from(from_id)
        return self

    def add_conditional_edge(
        self, from_id: str, predicate: Callable[[Context], bool], yes_id: str, no_id: str
    ) -> Graph:
        """After ``from_id``, go to ``yes_id`` if ``predicate(ctx)`` is true, else ``no_id``.

        Conditional edges are tried in the order added; ``no_id`` counts as a plain edge.
        """
        _check_id(from_id, "add_conditional_edge from_id")
        if not callable(predicate):
            raise TypeError(
                f"add_conditional_edge predicate must be callable (ctx) -> bool, "
                f"got {type(predicate).__name__}"
            )
        yes = _check_id(yes_id, "add_conditional_edge yes_id")
        no = _check_id(no_id, "add_conditional_edge no_id")
        self._edges.append((from_id, yes, predicate, False))
        self._edges.append((from_id, no, None, True))
        self._index_edges_from(from_id)
        return self

    def set_start_task(self, task_id: str) -> Graph:
        """Make ``task_id`` the start task; an unknown id raises TaskNotFound."""
        if task_id not in self._tasks:
            raise TaskNotFound(
                task_id, f"Cannot start graph '{self.id}' at unknown task '{task_id}'"
            )
        self._start_task_id = task_id
        return self

    def add_migration(self, from_version: int, fn: Migration) -> Graph:
        """Register ``fn(session)``, which brings a session of version ``from_version`` to
        ``from_version + 1`` in place: rename tasks (``current_task_id`` and ``history``),
        reshape or rename context keys, change the chat.

        A step that loads an older session applies the chain of migrations up to the graph's
        version before it runs, and saves the result with the step.
        """
        check_graph_version(from_version, "add_migration from_version")
        if from_version >= self.version:
            raise ValueError(
                f"a migration from version {from_version} of graph '{self.id}' leads to version "
                f"{from_version + 1}, above the graph's version {self.version}: give the graph "
                f"its new version first, Graph({self.id!r}, version={from_version + 1})"
            )
        if not callable(fn):
            raise TypeError(f"add_migration takes a function fn(session), got {type(fn).__name__}")
        if from_version in self._migrations:
            raise GraphError(
                f"graph '{self.id}' already has a migration from version {from_version} to "
                f"{from_version + 1}; one function per version: do both changes in it"
            )
        self._migrations[from_version] = fn
        return self

    def migration(self, from_version: int) -> Migration | None:
        """The migration registered from ``from_version`` to the next version, or None."""
        return self._migrations.get(from_version)

    def _index_edges_from(self, from_id: str) -> None:
        conditional: list[tuple[Predicate, str]] = []
        first_plain: str | None = None
        for source, target, predicate, _ in self._edges:
            if source != from_id:
                continue
            if predicate is not None:
                conditional.append((predicate, target))
            elif first_plain is None:
                first_plain = target
        self._out_edges[from_id] = (tuple(conditional), first_plain)

    # -- reading --------------------------------------------------------------------------------

    @property
    def start_task_id(self) -> str | None:
        """The id of the task a new session starts at (None for an empty graph)."""
        return self._start_task_id

    @property
    def task_ids(self) -> list[str]:
        """The ids of the tasks, in the order added."""
        return list(self._tasks)

    def get_task(self, task_id: str) -> Task | None:
        """The task with that id, or None."""
        return self._tasks.get(task_id)

    def edges(self) -> list[tuple[str, str, str | None]]:
        """Every edge as ``(from_id, to_id, label)`` in the order added.

        The label is ``"yes: <predicate name>"`` or ``"no"`` for a conditional edge's branches,
        None for a plain edge.
        """
        out: list[tuple[str, str, str | None]] = []
        for source, target, predicate, is_no in self._edges:
            if predicate is not None:
                name = getattr(predicate, "__name__", type(predicate).__name__)
                out.append((source, target, f"yes: {name}"))
            else:
                out.append((source, target, "no" if is_no else None))
        return out

    def find_next_task(self, from_id: str, ctx: Context) -> str | None:
        """The id of the task after ``from_id`` on ``ctx``, or None when no edge applies."""
        return find_next_task(self._out_edges, from_id, ctx)

    async def execute_session(self, session: Session) -> ExecutionResult:
        """Run one step of ``session`` (its current task and any ContinueAndExecute chain).

        A completed session, or one waiting for a time still to come, runs nothing. The
        result's ``version`` is left None: the session is not saved here. A session of another
        graph, or of a graph version it cannot be brought to, raises GraphError; an older one
        is migrated first.
        """
        check_owner(self, session)
        if session.is_completed or session.wake_at is not None:
            not_run = held(session)
            if not_run is not None:
                return not_run
        if session.graph_version != self.version:
            migrate(self, session)
        return await run_step(self._start_step(session), NO_OBSERVERS, None)

    def _start_step(self, session: Session, version: int | None = None) -> StepRun:
        """A step of ``session`` (due to run, at this graph's version) on this graph's tasks
        and edges, for the engine to run; ``version`` is what its result reports."""
        return StepRun(
            self.id,
            self._tasks,
            self._out_edges,
            self.max_steps,
            self.task_timeout,
            session,
            version,
        )

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart; the start task is drawn as a stadium shape, and
        the children of a FanOutTask as subroutine shapes hanging off it by dotted arrows."""
        node_ids: dict[str, str] = {}

        def node(task_id: str) -> str:
            if task_id not in node_ids:
                node_ids[task_id] = f"t{len(node_ids)}"
            return node_ids[task_id]

        lines = ["flowchart TD"]
        if self.version != 1:
            lines.append(f"    %% {_mermaid_text(self.id)}, version {self.version}")
        children_links: list[str] = []

        def children(parent: str, task: Task | None) -> None:
            for i, child in enumerate(task.children if isinstance(task, FanOutTask) else ()):
                name = f"{parent}_{i}"
                lines.append(f'    {name}[["{_mermaid_text(child.id)}"]]')
                children_links.append(f"    {parent} -.-> {name}")
                children(name, child)

        for task_id in [*self._tasks, *(e[1] for e in self._edges)]:
            if task_id in node_ids:
                continue
            label = _mermaid_text(task_id)
            if task_id == self._start_task_id:
                lines.append(f'    {node(task_id)}(["{label}"])')
            elif task_id not in self._tasks:
                lines.append(f'    {node(task_id)}["{label} (missing)"]')
            else:
                lines.append(f'    {node(task_id)}["{label}"]')
            children(node(task_id), self._tasks.get(task_id))
        for source, target, edge_label in self.edges():
            arrow = "-->" if edge_label is None else f'-->|"{_mermaid_text(edge_label)}"|'
            lines.append(f"    {node(source)} {arrow} {node(target)}")
        return "\n".join([*lines, *children_links]) + "\n"

    def __repr__(self) -> str:
        version = "" if self.version == 1 else f" version {self.version}"
        return (
            f"<Graph {self.id!r}{version}: {len(self._tasks)} tasks, start={self._start_task_id!r}>"
        )


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


class GraphBuilder:
    """Build a Graph fluently; :meth:`build` checks it before handing it out.

    ``GraphBuilder("support").add_task(a).add_task(b).add_edge(a.id, b.id).build()``
    """

    def __init__(
        self,
        id: str,
        *,
        task_timeout: float | None = 300.0,
        max_steps: int | None = 10_000,
        version: int = 1,
    ) -> None:
        # A Graph checks the arguments now, so a mistake is reported where it was made.
        self._graph = Graph(id, task_timeout=task_timeout, max_steps=max_steps, version=version)
        self._start_task_id: str | None = None

    def add_task(self, task: Task) -> GraphBuilder:
        """Add a task (one with the same id is replaced); the first one added starts the graph."""
        self._graph.add_task(task)
        return self

    def add_edge(self, from_id: str, to_id: str) -> GraphBuilder:
        """After ``from_id``, go to ``to_id``."""
        self._graph.add_edge(from_id, to_id)
        return self

    def add_conditional_edge(
        self, from_id: str, predicate: Callable[[Context], bool], yes_id: str, no_id: str
    ) -> GraphBuilder:
        """After ``from_id``, go to ``yes_id`` if ``predicate(ctx)`` is true, else ``no_id``."""
        self._graph.add_conditional_edge(from_id, predicate, yes_id, no_id)
        return self

    def add_migration(self, from_version: int, fn: Migration) -> GraphBuilder:
        """Register a migration from ``from_version`` to the next (see Graph.add_migration)."""
        self._graph.add_migration(from_version, fn)
        return self

    def set_start_task(self, task_id: str) -> GraphBuilder:
        """Start at ``task_id`` (checked by :meth:`build`)."""
        _check_id(task_id, "set_start_task task_id")
        self._start_task_id = task_id
        return self

    def build(self) -> Graph:
        """A new Graph, checked: every edge names known tasks, the start task exists.

        Raises GraphError for a graph with no tasks, InvalidEdge for an edge to or from an
        unknown task, TaskNotFound for an unknown start task.
        """
        source = self._graph
        if not source._tasks:
            raise GraphError(
                f"Graph '{source.id}' has no tasks: add_task at least one before build()"
            )
        for from_id, to_id, _, _ in source._edges:
            for end, task_id in (("from", from_id), ("to", to_id)):
                if task_id not in source._tasks:
                    raise InvalidEdge(
                        f"Edge '{from_id}' -> '{to_id}' in graph '{source.id}' names unknown task "
                        f"'{task_id}' ({end}); add_task it or fix the id. "
                        f"Known tasks: {', '.join(sorted(source._tasks))}"
                    )
        graph = Graph(
            source.id,
            task_timeout=source.task_timeout,
            max_steps=source.max_steps,
            version=source.version,
        )
        for task in source._tasks.values():
            graph.add_task(task)
        graph._migrations = dict(source._migrations)
        graph._edges = list(source._edges)
        for from_id in {edge[0] for edge in source._edges}:
            graph._index_edges_from(from_id)
        if self._start_task_id is not None:
            graph.set_start_task(self._start_task_id)
        return graph
