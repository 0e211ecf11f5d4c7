"""What one process keeps of an installation: the graph, imported once, and the storage, opened
once, both on the process's own event loop (see ``_loop``).

A worker's pool process opens them when it starts (so that a bad graph reference or an
unreachable database is logged at once) or on its first message; a client opens the storage on its
first ``submit`` that checks the session. A forked process starts afresh: the storage's
connections belong to the process that opened them.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flowcore import (
    FlowRunner,
    Graph,
    SessionNotFound,
    SessionStorage,
    StorageError,
    hide_password,
    open_storage,
    quote_id,
)
from flowcore_celery._errors import GraphReferenceError
from flowcore_celery._loop import LoopThread

__all__ = ["Installation", "import_graph"]


@dataclass
class Installation:
    """flowcore's tasks on one Celery app, as ``install()`` set them up."""

    graph_ref: str
    storage_url: str
    storage_options: Mapping[str, Any]
    wake_ahead: timedelta
    max_retries: int
    steps_per_message: int
    loop: LoopThread = field(default_factory=lambda: LoopThread("flowcore-celery"))
    _pid: int = 0
    _graph: Graph | None = None
    _storage: SessionStorage | None = None
    _runner: FlowRunner | None = None
    _opening: asyncio.Lock | None = None

    @property
    def where(self) -> str:
        """The storage URL, its password hidden: for messages and logs."""
        return hide_password(self.storage_url)

    def graph(self) -> Graph:
        """The graph, imported on first use in this process."""
        self._forget_if_forked()
        if self._graph is None:
            self._graph = import_graph(self.graph_ref)
        return self._graph

    async def storage(self) -> SessionStorage:
        """The storage, opened on first use in this process (on the installation's loop)."""
        self._forget_if_forked()
        if self._storage is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._storage is None:
                    self._storage = await self._open()
        return self._storage

    async def runner(self) -> FlowRunner:
        """A runner of the graph on the storage, made once in this process."""
        if self._runner is None or self._pid != os.getpid():
            graph = self.graph()
            self._runner = FlowRunner(graph, await self.storage())
        return self._runner

    async def check(self, session_id: str) -> None:
        """Raise SessionNotFound when the session is not stored, StorageError (naming the URL)
        when the storage cannot say."""
        storage = await self.storage()
        try:
            session = await storage.get(session_id)
        except StorageError as exc:
            raise StorageError(
                f"flowcore-celery could not read session {quote_id(session_id)} from the "
                f"storage {self.where} before sending its step: {exc}. Start the database, fix "
                "the storage URL given to install(), or send without the check (check=False)"
            ) from exc
        if session is None:
            raise SessionNotFound(session_id)

    async def close(self) -> None:
        """Close the storage this process opened (a no-op if it opened none)."""
        storage, self._storage, self._runner = self._storage, None, None
        if storage is not None and self._pid == os.getpid():
            await storage.close()

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():
            # Inherited from the parent: its connections are the parent's, never to be used
            # (nor closed) here.
            self._pid = os.getpid()
            self._storage = self._runner = None
            self._opening = None

    async def _open(self) -> SessionStorage:
        try:
            storage = open_storage(self.storage_url, **self.storage_options)
            await storage.__aenter__()
        except StorageError as exc:
            raise StorageError(
                f"flowcore-celery could not open the storage {self.where} given to install(): {exc}"
            ) from exc
        return storage


def import_graph(reference: str) -> Graph:
    """The Graph that ``"module:attr"`` names: an attribute (dotted: ``module:obj.graph``) that is
    a Graph, or a function without arguments that returns one."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise GraphReferenceError(
            f"The graph reference {quote_id(reference)} is not 'module:attribute': write it as "
            "'package.module:graph' (a Graph, or a function returning one)"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except Exception as exc:  # an import runs the user's module: anything may go wrong in it
        raise GraphReferenceError(
            f"The graph {quote_id(reference)} given to flowcore_celery.install() could not be "
            f"imported: {type(exc).__name__}: {exc}. Check that the worker can import "
            f"{module_name!r} (its folder on sys.path, the worker started from there)"
        ) from exc
    if callable(found) and not isinstance(found, Graph):
        try:
            found = found()
        except Exception as exc:
            raise GraphReferenceError(
                f"The graph function {quote_id(reference)} given to flowcore_celery.install() "
                f"raised {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(found, Graph):
        raise GraphReferenceError(
            f"The graph reference {quote_id(reference)} names a {type(found).__name__}, not a "
            "flowcore Graph (nor a function returning one)"
        )
    return found
