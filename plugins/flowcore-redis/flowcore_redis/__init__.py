"""flowcore-redis: flowcore sessions in Redis.

Installed, it serves ``flowcore.open_storage("redis://host:6379/0")``, ``rediss://`` (TLS) and
``unix://`` (a Unix socket); :class:`RedisSessionStorage` takes the same options as keyword
arguments, or an application's own ``redis.asyncio.Redis`` as ``client=``. One hash per session,
compare-and-set in one server-side script, expiry by Redis's own clock, and sorted-set indexes for
listing and due sessions, with keys a Redis Cluster can hash (one slot per session).

redis-py takes a quarter of a second to import, so it is imported when the storage class is
first used, not when flowcore loads the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowcore_redis._storage import RedisSessionStorage

__version__ = "0.1.0"

__all__ = ["RedisSessionStorage", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "RedisSessionStorage":
        from flowcore_redis._storage import RedisSessionStorage

        return RedisSessionStorage
    raise AttributeError(f"module 'flowcore_redis' has no attribute {name!r}")
