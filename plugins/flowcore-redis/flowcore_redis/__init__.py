"""flowcore-redis: flowcore sessions in Redis.

Installed, it serves ``flowcore.open_storage("redis://host:6379/0")``, ``rediss://`` (TLS) and
``unix://`` (a Unix socket); :class:`RedisSessionStorage` takes the same options as keyword
arguments, or an application's own ``redis.asyncio.Redis`` as ``client=``. One hash per session,
compare-and-set in one server-side script, expiry by Redis's own clock, and sorted-set indexes for
listing and due sessions, with keys a Redis Cluster can hash (one slot per session).
"""

from __future__ import annotations

import contextlib

from flowcore_redis._storage import RedisSessionStorage

__version__ = "0.1.0"

__all__ = ["RedisSessionStorage", "__version__"]

# Report public names as flowcore_redis.X in reprs, tracebacks and docs.
with contextlib.suppress(AttributeError, TypeError):
    RedisSessionStorage.__module__ = "flowcore_redis"
