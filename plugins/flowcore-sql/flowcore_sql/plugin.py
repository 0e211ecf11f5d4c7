"""flowcore-sql's plugin: the entry point ``sql`` in the group ``flowcore`` names this module.

It registers the URL schemes it serves, so that ``flowcore.open_storage("sqlite:///x.db")`` and
``open_storage("postgresql://...")`` (with or without a driver suffix) return its backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcore import hookimpl
from flowcore_sql._storage import SqlSessionStorage

__all__ = ["SCHEMES", "flowcore_register_storage"]

SCHEMES = ("sqlite", "postgresql", "postgres")
"""``postgres://`` is the short form many hosting services hand out."""


@hookimpl
def flowcore_register_storage(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Serve sqlite:// and postgresql:// (and postgres://) URLs."""
    for scheme in SCHEMES:
        register(scheme, SqlSessionStorage.from_url)
