"""The failure every command of ``flowcore`` raises when the user can fix what went wrong, and
how such a failure names a storage backend."""

from __future__ import annotations

from flowcore._open import scheme_of

__all__ = ["CliError", "backend_name"]


class CliError(Exception):
    """A failure the user can fix: printed as one line, exit status 1."""


def backend_name(url: str, storage: object) -> str:
    """The backend serving ``url`` as a failure names it, e.g.
    ``the sqlite:// backend (SqliteSessionStorage)``."""
    return f"the {scheme_of(url)}:// backend ({type(storage).__name__})"
