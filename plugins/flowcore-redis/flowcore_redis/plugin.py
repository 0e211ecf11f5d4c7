"""flowcore-redis's plugin: the entry point ``redis`` in the group ``flowcore`` names this module.

It registers the URL schemes it serves, so that ``flowcore.open_storage("redis://host:6379/0")``
(and ``rediss://`` for TLS, ``unix://`` for a Unix socket) returns a RedisSessionStorage. redis-py
is imported when a storage is first opened, not when flowcore loads the plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcore import SessionStorage, hookimpl

__all__ = ["SCHEMES", "flowcore_register_storage", "open_redis"]

SCHEMES = ("redis", "rediss", "unix")
"""``redis://`` over TCP, ``rediss://`` over TLS, ``unix://`` through a Unix socket."""


def open_redis(url: str, **options: Any) -> SessionStorage:
    """The ``open_storage`` factory: a RedisSessionStorage for ``url``."""
    from flowcore_redis._storage import RedisSessionStorage

    return RedisSessionStorage(url, **options)


@hookimpl
def flowcore_register_storage(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Serve redis://, rediss:// and unix:// URLs."""
    for scheme in SCHEMES:
        register(scheme, open_redis)
