"""``flowcore sessions list|show|delete|cleanup``: stored sessions, seen from a shell."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import unquote

from flowcore._cli.errors import CliError, backend_name
from flowcore._errors import StorageError, quote_id
from flowcore._json_view import session_as_json
from flowcore._open import hide_password, open_storage, scheme_of
from flowcore._storage import SessionStorage

__all__ = [
    "cleanup_command",
    "delete_command",
    "list_command",
    "open_existing",
    "show_command",
    "shown",
]

shown = hide_password  # a URL as the command prints it: with any password hidden


def _sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL (None for another scheme or an in-memory one).

    Read as flowcore-sql reads it (through SQLAlchemy): the path ends at the query (``?mode=ro``),
    is percent-decoded, and may hold a ``#``."""
    try:
        scheme = scheme_of(url)
    except StorageError:
        return None  # not a storage URL: open_storage says so
    rest = url.split("://", 1)[1]
    if scheme != "sqlite" or not rest.startswith("/"):
        return None  # another scheme, or a host or no path at all, which the backend reports
    path = unquote(rest[1:].partition("?")[0])  # sqlite:///relative.db, sqlite:////absolute.db
    return None if path in ("", ":memory:") else path


def _check_sqlite_file(url: str) -> None:
    """Opening a missing SQLite file would create an empty database: a typo would go unnoticed."""
    path = _sqlite_file(url)
    if path is not None and not os.path.exists(path):
        create = url.partition("?")[0]  # without the options of reading, such as mode=ro
        raise CliError(
            f"there is no SQLite database at '{path}' (from {shown(url)}); check the path "
            f"(relative paths start in {os.getcwd()}), or create it with: "
            f"flowcore db migrate {create}"
        )


@asynccontextmanager
async def open_existing(url: str) -> AsyncIterator[SessionStorage]:
    """The backend for ``url``, connected; a SQLite file must exist already."""
    _check_sqlite_file(url)
    async with open_storage(url) as storage:
        yield storage


async def list_command(
    url: str, *, limit: int | None, after: str | None, as_json: bool, due: bool = False
) -> int:
    async with open_existing(url) as storage:
        if due:
            ids = await _due_ids(url, storage, limit)
        else:
            try:
                ids = await storage.list_sessions(limit=limit, after=after)
            except NotImplementedError:
                raise CliError(
                    f"{backend_name(url, storage)} cannot list sessions; look one up by id: "
                    "flowcore sessions show ID --storage URL"
                ) from None
    if as_json:
        print(json.dumps(ids, indent=2, ensure_ascii=False))
    else:
        for session_id in ids:
            print(session_id)
    return 0


async def _due_ids(url: str, storage: SessionStorage, limit: int | None) -> list[str]:
    """The ids of the sessions due now by the storage's own clock, earliest first."""
    try:
        return await storage.due_sessions(None, limit)
    except NotImplementedError:
        raise CliError(
            f"{backend_name(url, storage)} cannot tell which sessions are due (it does not "
            "implement due_sessions); see when one wakes with: flowcore sessions show ID "
            "--storage URL"
        ) from None


async def show_command(url: str, session_id: str) -> int:
    async with open_existing(url) as storage:
        try:
            session = await storage.get(session_id)
        except StorageError as exc:
            # The codec's message for a type this process has not registered: say how to.
            if "is not registered" not in str(exc):
                raise
            raise CliError(
                f"StorageError: {exc}; to have flowcore sessions show register it, name the "
                "module of your application that does: --import MODULE"
            ) from None
    if session is None:
        raise _not_found(url, session_id)
    print(json.dumps(session_as_json(session), indent=2, ensure_ascii=False))
    return 0


async def delete_command(url: str, session_ids: Sequence[str]) -> int:
    missing = []
    async with open_existing(url) as storage:
        for session_id in session_ids:
            try:
                exists = await storage.get(session_id) is not None
            except StorageError:
                # Stored but unreadable (or the database failed, and delete will say so):
                # deleting a session that cannot be decoded is what this command is for.
                exists = True
            if not exists:
                missing.append(session_id)
                continue
            await storage.delete(session_id)
            print(f"deleted {quote_id(session_id)}")
    if missing:
        raise _not_found(url, *missing)
    return 0


def _not_found(url: str, *session_ids: str) -> CliError:
    names = ", ".join(quote_id(i) for i in session_ids)
    plural = "s" if len(session_ids) > 1 else ""
    return CliError(
        f"no session{plural} {names} in {shown(url)}; list the stored ids with: "
        "flowcore sessions list --storage URL"
    )


async def cleanup_command(url: str, *, batch: int) -> int:
    async with open_existing(url) as storage:
        cleanup = getattr(storage, "cleanup", None)
        if cleanup is None:
            raise CliError(
                f"{backend_name(url, storage)} does not expire sessions, so there is nothing "
                "to clean up"
            )
        deleted = await cleanup(batch=batch)
    print(f"deleted {deleted} expired session{'' if deleted == 1 else 's'}")
    return 0
