"""``flowcore sessions migrate``: bring every stored session up to a graph's version."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from flowcore._cli.errors import CliError, backend_name
from flowcore._cli.sessions import open_existing, shown
from flowcore._errors import GraphError, SessionConflict, StorageError, quote_id
from flowcore._graph import Graph
from flowcore._migrations import DEFAULT_GRAPH_ID, migrate
from flowcore._storage import SessionStorage

__all__ = ["sessions_migrate_command"]

LISTING_PAGE = 5000
"""Ids asked for at a time while listing what to migrate."""

ATTEMPTS = 5
"""Loads of one session before giving up on it, when other writers keep saving it meanwhile."""


@dataclass
class _Tally:
    migrated: int = 0
    current: int = 0
    other_graph: int = 0
    gone: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.migrated + self.current + self.other_graph + self.gone + len(self.failed)


async def sessions_migrate_command(
    url: str, graph: Graph, *, dry_run: bool, batch: int, progress: TextIO | None = None
) -> int:
    """Migrate every stored session of ``graph`` (or of no graph) to its version.

    Each session is loaded, migrated and saved with compare-and-set: one stepped meanwhile is
    loaded again, never overwritten. Sessions already at the version are only read, so a run
    that was interrupted is resumed by running it again.
    """
    bar = progress if progress is not None else sys.stderr
    tally = _Tally()
    async with open_existing(url) as storage:
        ids = await _all_ids(url, storage, LISTING_PAGE)
        started = time.perf_counter()
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            await asyncio.gather(*(_one(storage, graph, i, dry_run, tally) for i in chunk))
            if bar.isatty():
                _draw(bar, tally.done, len(ids), started)
        if bar.isatty() and ids:
            bar.write("\n")
    _summary(url, graph, tally, dry_run, time.perf_counter() - started)
    return 1 if tally.failed else 0


async def _all_ids(url: str, storage: SessionStorage, page: int) -> list[str]:
    ids: list[str] = []
    after = None
    try:
        while True:
            found = await storage.list_sessions(limit=page, after=after)
            ids += found
            if len(found) < page:
                return ids
            after = found[-1]
    except NotImplementedError:
        raise CliError(
            f"{backend_name(url, storage)} cannot list its sessions, so they cannot be "
            "migrated in bulk; each is migrated at its next step"
        ) from None


async def _one(
    storage: SessionStorage, graph: Graph, session_id: str, dry_run: bool, tally: _Tally
) -> None:
    for _ in range(ATTEMPTS):
        try:
            session = await storage.get(session_id)
        except StorageError as exc:
            tally.failed.append((session_id, str(exc)))
            return
        if session is None:
            tally.gone += 1  # deleted since it was listed
            return
        if session.graph_id not in (graph.id, DEFAULT_GRAPH_ID):
            tally.other_graph += 1
            return
        if session.graph_version == graph.version:
            tally.current += 1
            return
        try:
            migrate(graph, session)
        except GraphError as exc:
            tally.failed.append((session_id, str(exc)))
            return
        if dry_run:
            tally.migrated += 1
            return
        try:
            await storage.save(session)
        except SessionConflict:
            continue  # stepped meanwhile: load it again
        except StorageError as exc:
            tally.failed.append((session_id, str(exc)))
            return
        tally.migrated += 1
        return
    tally.failed.append(
        (session_id, f"other writers saved it {ATTEMPTS} times while it was migrated; run again")
    )


def _draw(out: TextIO, done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // total if total else width
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * filled + "." * (width - filled)
    out.write(f"\rmigrating [{bar}] {done:,}/{total:,} {rate:,.0f}/s")
    out.flush()


def _summary(url: str, graph: Graph, tally: _Tally, dry_run: bool, seconds: float) -> None:
    verb = "would migrate" if dry_run else "migrated"
    target = f"version {graph.version} of graph {quote_id(graph.id)}"
    print(f"{verb} {tally.migrated:,} session(s) to {target} in {shown(url)} ({seconds:.1f} s)")
    print(f"already at version {graph.version}: {tally.current:,}")
    if tally.other_graph:
        print(f"left alone, of other graphs: {tally.other_graph:,}")
    if tally.gone:
        print(f"deleted while migrating: {tally.gone:,}")
    if dry_run:
        print("dry run: nothing was saved")
    if tally.failed:
        print(f"failed: {len(tally.failed):,} (left as they were)")
        for session_id, why in sorted(tally.failed):
            print(f"  {quote_id(session_id)}: {why}")
