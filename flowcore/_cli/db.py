"""``flowcore db migrate``: create or upgrade the tables of a storage backend."""

from __future__ import annotations

from flowcore._cli.errors import CliError, backend_name
from flowcore._open import hide_password, open_storage

__all__ = ["db_migrate_command"]


async def db_migrate_command(url: str) -> int:
    storage = open_storage(url)
    try:
        migrate = getattr(storage, "migrate", None)
        if migrate is None:
            raise CliError(f"{backend_name(url, storage)} has no schema to migrate")
        # Not `async with`: a backend may migrate as it connects, and this reports what it did.
        applied = list(await migrate())
    finally:
        await storage.close()
    shown = hide_password(url)
    if applied:
        versions = ", ".join(str(v) for v in applied)
        print(f"applied migration{'' if len(applied) == 1 else 's'} {versions} to {shown}")
    else:
        print(f"{shown} is up to date")
    return 0
