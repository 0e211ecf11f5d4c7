"""``flowcore graph MODULE:ATTR``: find a graph in the user's code and draw it, as text or as a
Mermaid chart; and import the user's modules, for it and for ``--import``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from flowcore._cli.errors import CliError
from flowcore._fanout import FanOutTask
from flowcore._graph import Graph, GraphBuilder
from flowcore._task import Task

__all__ = ["graph_as_text", "import_user_module", "load_graph"]


def load_graph(target: str) -> Graph:
    """The graph ``MODULE:ATTR`` names: a Graph, a GraphBuilder (built), or a function that
    returns either (called with no arguments)."""
    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise CliError(
            f"'{target}' is not MODULE:ATTR; name a module and a graph in it, e.g. "
            "examples.claim_demo:build_graph"
        )
    value = _attribute(import_user_module(module_name), module_name, attribute)
    if callable(value) and not isinstance(value, (Graph, GraphBuilder)):
        value = _call(target, value)
    if isinstance(value, GraphBuilder):
        try:
            value = value.build()
        except Exception as exc:  # InvalidEdge, or whatever the user's builder raised
            raise CliError(
                f"building the graph of '{target}' failed: {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(value, Graph):
        raise CliError(
            f"'{target}' is a {type(value).__name__}, not a flowcore Graph, a GraphBuilder or "
            "a function that returns one"
        )
    return value


def _call(target: str, factory: Callable[[], object]) -> object:
    """What ``factory()`` returns; one that needs arguments, or raises, is the user's to fix."""
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:  # it needs arguments: a call would fail, saying less
        raise CliError(
            f"'{target}' cannot be called without arguments ({exc}); name a Graph, a "
            "GraphBuilder, or a function that needs no arguments and returns one"
        ) from None
    except ValueError:  # no signature to read (some builtins): calling it will tell
        pass
    try:
        return factory()
    except Exception as exc:
        raise CliError(f"calling '{target}' failed: {type(exc).__name__}: {exc}") from None


def import_user_module(module_name: str) -> Any:
    """Import one of the user's modules, as ``python -m`` would find it (the current directory
    is on the import path); a module that cannot be imported is a CliError."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CliError(
                f"no module named '{module_name}': run flowcore from the directory that holds "
                "it, or add that directory to PYTHONPATH"
            ) from None
        raise CliError(f"importing '{module_name}' failed: {exc}") from None
    except Exception as exc:  # the user's module raised while it was imported
        raise CliError(f"importing '{module_name}' failed: {type(exc).__name__}: {exc}") from None


def _attribute(module: Any, module_name: str, attribute: str) -> Any:
    value = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(f"module '{module_name}' has no attribute '{attribute}'") from None
    return value


def graph_as_text(graph: Graph) -> str:
    """The tasks of ``graph`` in the order added, each with its outgoing edges in order (and a
    fan-out with the children it runs)."""
    task_ids = graph.task_ids
    count = f"{len(task_ids)} task{'' if len(task_ids) == 1 else 's'}"
    lines = [f"graph {graph.id} version {graph.version} ({count}, start: {graph.start_task_id})"]
    edges: dict[str, list[str]] = {}
    for source, target, label in graph.edges():
        missing = "" if target in task_ids else "  (missing task)"
        condition = ""
        if label is not None:
            condition = "  if " + label[5:] if label.startswith("yes: ") else "  otherwise"
        edges.setdefault(source, []).append(f"-> {target}{condition}{missing}")
    for task_id in [*task_ids, *(s for s in edges if s not in task_ids)]:
        task = graph.get_task(task_id)
        marks = ["start"] if task_id == graph.start_task_id else []
        if task is None:
            marks = ["missing task"]
        lines.append(f"  {task_id}{_marks(task, marks)}")
        lines.extend(_children_as_text(task, "      "))
        lines.extend(f"      {edge}" for edge in edges.get(task_id, ["(no outgoing edge)"]))
    return "\n".join(lines) + "\n"


def _marks(task: Task | None, marks: list[str]) -> str:
    if isinstance(task, FanOutTask):
        marks = [*marks, "fan-out"]
    return f" ({', '.join(marks)})" if marks else ""


def _children_as_text(task: Task | None, indent: str) -> list[str]:
    """``runs <child>`` for each child of a fan-out, a fan-out child's own below it."""
    lines = []
    for child in _children(task):
        lines.append(f"{indent}runs {child.id}{_marks(child, [])}")
        lines.extend(_children_as_text(child, indent + "    "))
    return lines


def _children(task: Task | None) -> tuple[Task, ...]:
    return task.children if isinstance(task, FanOutTask) else ()
