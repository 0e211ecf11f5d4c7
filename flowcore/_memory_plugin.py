"""The ``memory://`` storage scheme: flowcore's built-in plugin, registered like any other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcore._errors import StorageError, quote_id
from flowcore._hooks import hookimpl
from flowcore._storage import InMemorySessionStorage

__all__ = ["flowcore_register_storage", "open_memory"]


def open_memory(url: str, **options: Any) -> InMemorySessionStorage:
    """``memory://``: a new, empty InMemorySessionStorage."""
    if options:
        raise StorageError(f"memory:// takes no options, got {', '.join(sorted(options))}")
    rest = url.split("://", 1)[1]
    if rest not in ("", "/"):
        raise StorageError(f"memory:// takes no host or path, got {quote_id(url)}; use 'memory://'")
    return InMemorySessionStorage()


@hookimpl
def flowcore_register_storage(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("memory", open_memory)
