"""A Redis Cluster: the storage on an application's ``redis.asyncio.RedisCluster``.

On a cluster of the module's own (three primaries, every slot served, sessions spread over all
three), the conformance suite passes, runners lose no update, and listing and due sessions
find sessions whatever node keeps them.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
import redis.asyncio
from flowcore_redis import RedisSessionStorage
from redis.crc import key_slot
from redis_servers import PrivateCluster, new_prefix, require

from flowcore import FlowRunner, Session, SessionConflict, StorageError
from flowcore.testing import RawBlobWriter, StorageConformance, counter_graph

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        require("These tests need redis-server and redis-cli to start a cluster of their own")
    made = PrivateCluster()
    try:
        made.start()
        yield made
    finally:
        made.remove()


@pytest.fixture
async def client(cluster: PrivateCluster) -> AsyncIterator[redis.asyncio.RedisCluster]:
    made = redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    yield made
    await made.aclose()


@pytest.fixture
async def on_cluster(client: redis.asyncio.RedisCluster) -> AsyncIterator[RedisSessionStorage]:
    async with RedisSessionStorage(client=client, prefix=new_prefix()) as storage:
        yield storage


class TestRedisClusterConformance(StorageConformance):
    @pytest.fixture
    async def storage(self, on_cluster: RedisSessionStorage) -> RedisSessionStorage:
        return on_cluster

    @pytest.fixture
    def put_raw_blob(
        self, on_cluster: RedisSessionStorage, cluster: PrivateCluster
    ) -> RawBlobWriter:
        def put(session_id: str, version: int, blob: bytes) -> None:
            port = cluster.servers[0].port
            with redis.RedisCluster(host="127.0.0.1", port=port) as raw:
                raw.hset(on_cluster.key_of(session_id), mapping={"v": version, "b": blob})
                raw.zadd(f"{on_cluster.prefix}sessions", {session_id.encode(): 0})

        return put


async def test_sessions_spread_over_the_nodes_and_runners_lose_no_update(
    on_cluster: RedisSessionStorage, cluster: PrivateCluster
) -> None:
    runners = [FlowRunner(counter_graph(), on_cluster)] * 16
    ids = [f"claim-{i}" for i in range(30)]
    await asyncio.gather(*(runners[0].create_session(i) for i in ids))

    async def step_once(runner: FlowRunner, session_id: str) -> None:
        while True:
            try:
                await runner.run(session_id)
                return
            except SessionConflict:
                pass

    await asyncio.gather(*(step_once(r, i) for r in runners for i in ids[:3]))

    for session_id in ids[:3]:
        stored = await on_cluster.get(session_id)
        assert stored is not None
        assert (stored.version, stored.context.get("counter")) == (17, 16)
    assert await on_cluster.list_sessions() == sorted(ids)
    keys = [on_cluster.key_of(i).encode() for i in ids]
    with redis.RedisCluster(host="127.0.0.1", port=cluster.servers[0].port) as raw:
        holders = {raw.get_node_from_key(key).port for key in keys}
    assert len(holders) == 3  # every node keeps some
    assert len({key_slot(key) for key in keys}) == len(keys)


async def test_due_sessions_by_the_clock_of_the_node_that_keeps_the_index(
    on_cluster: RedisSessionStorage,
) -> None:
    now = datetime.now(timezone.utc)
    for i in range(10):
        session = Session.new_from_task(f"s{i}", "start")
        session.wake_at = now + timedelta(hours=-1 if i % 2 else 1, seconds=i)
        await on_cluster.save(session)

    assert await on_cluster.due_sessions() == ["s1", "s3", "s5", "s7", "s9"]
    assert await on_cluster.due_sessions(now + timedelta(hours=2), 3) == ["s1", "s3", "s5"]
    await on_cluster.delete("s1")
    assert (await on_cluster.due_sessions())[0] == "s3"


async def test_only_the_options_a_cluster_client_leaves_to_the_storage_are_taken(
    client: redis.asyncio.RedisCluster, cluster: PrivateCluster
) -> None:
    with pytest.raises(StorageError, match=r"Unknown option 'pool_size' .*: prefix, ttl"):
        RedisSessionStorage(client=client, pool_size=3)  # type: ignore[call-arg]
    decoding = redis.asyncio.RedisCluster(
        host="127.0.0.1", port=cluster.servers[0].port, decode_responses=True
    )
    try:
        with pytest.raises(StorageError, match="decodes responses"):
            RedisSessionStorage(client=decoding)
    finally:
        await decoding.aclose()
    storage = RedisSessionStorage(client=client, ttl=60)
    assert storage.url == f"redis://127.0.0.1:{cluster.servers[0].port} (a Redis Cluster)"
