"""Small building blocks the tests share: tasks that do one thing, a runner factory,
installed plugins made up for a test, and the flowcore command run as a user runs it."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from flowcore import (
    Context,
    FlowRunner,
    Graph,
    InMemorySessionStorage,
    NextAction,
    Session,
    SessionStorage,
    Task,
    TaskResult,
    hookimpl,
)
from flowcore.testing import run_flowcore


class Step(Task):
    """A sync task that appends its id to ctx['trail'] and returns a fixed action."""

    def __init__(
        self,
        id: str,
        action: NextAction = NextAction.Continue,
        *,
        response: str | None = None,
        status: str | None = None,
    ) -> None:
        self.id = id
        self.action = action
        self.response = response if response is not None else f"{id} done"
        self.status = status

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("trail", [*ctx.get("trail", []), self.id])
        return TaskResult(self.response, self.action, self.status)


class AsyncStep(Step):
    """The same as Step, with an async run that yields to the event loop once."""

    async def run(self, ctx: Context) -> TaskResult:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().run(ctx)


class Fails(Task):
    """A task that writes to the context and the chat, then raises."""

    def __init__(self, id: str, error: Exception | None = None) -> None:
        self.id = id
        self.error = error or RuntimeError("boom")

    def run(self, ctx: Context) -> TaskResult:
        ctx.set("written_by_failed_task", True)
        ctx.add_user_message("lost")
        raise self.error


def graph_of(*tasks: Task, edges: list[tuple[str, str]] = (), **options: object) -> Graph:  # type: ignore[assignment]
    graph = Graph("test", **options)  # type: ignore[arg-type]
    for t in tasks:
        graph.add_task(t)
    for a, b in edges:
        graph.add_edge(a, b)
    return graph


def runner_for(graph: Graph) -> FlowRunner:
    return FlowRunner(graph, InMemorySessionStorage())


Predicate = Callable[[Context], bool]


def install_plugin(
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
    distribution: str,
    *,
    version: str = "1.0",
    entry_points: dict[str, str],
    modules: dict[str, str],
) -> Path:
    """Install a distribution whose ``entry_points`` (name -> module) are in group flowcore.

    ``modules`` maps module names to their source. The distribution lives in its own directory
    under ``root``, put on sys.path for the test; returns that directory.
    """
    home = root / distribution
    home.mkdir()
    for module, source in modules.items():
        (home / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, module, raising=False)  # imported afresh, and forgotten
    dist_info = home / f"{distribution.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[flowcore]\n{lines}")
    monkeypatch.syspath_prepend(str(home))
    return home


class Unlisted(SessionStorage):
    """A backend that implements the contract and nothing optional: no listing, no expiry, no
    due sessions. ``UnlistedPlugin`` registers it as ``unlisted://``."""

    async def get(self, session_id: str) -> None:
        return None

    async def save(self, session: Session) -> None:
        session.version += 1

    async def delete(self, session_id: str) -> None:
        pass


class UnlistedPlugin:
    @hookimpl
    def flowcore_register_storage(self, register: Callable[..., None]) -> None:
        register("unlisted", lambda url, **options: Unlisted())


def flowcore_command(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the flowcore command as a user does, with flowcore-sql loaded: (status, out, err)."""
    done = run_flowcore(*args, load_plugins="sql", cwd=cwd, env=env)
    return done.returncode, done.stdout, done.stderr
