"""pgsift's Redis clients on a Redis Cluster: found through one node, waits bounded."""

from __future__ import annotations

import asyncio

import pytest
import redis

from pgsift.middleware.embedded.ports import free_port
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.reader import AsyncFeedReader, FeedReader
from pgsift.middleware.redis_clients import async_redis, node_url, sync_redis


def test_cluster_urls_name_one_node() -> None:
    assert node_url("redis+cluster://:pw@node-1:7000/0") == "redis://:pw@node-1:7000/0"
    assert node_url("rediss+cluster://node-1:7000") == "rediss://node-1:7000"
    assert node_url("redis://node-1:7000") is None


def test_every_database_key_lands_in_one_slot(redis_cluster_url: str) -> None:
    client = sync_redis(redis_cluster_url)
    try:
        slots = {
            client.keyslot(template.format("appdb", "x"))  # type: ignore[attr-defined]
            for template in (keys.FEED_STREAM, keys.FEED_TRIMMED, keys.CAPTURE_LOCK,
                             keys.CAPTURE_FENCE, keys.CAPTURE_HEARTBEAT, keys.RELATION_SCHEMAS)
        }
        assert len(slots) == 1
        # A script over the stream and its trim marker runs there.
        assert FeedReader(client, "appdb").bounds().end is not None
    finally:
        client.close()


async def test_a_bounded_cluster_client_waits_for_a_free_connection(
    redis_cluster_url: str,
) -> None:
    """More blocking reads than connections: they wait their turn instead of failing
    at once (redis-py's cluster client alone raises MaxConnectionsError)."""
    reader = AsyncFeedReader(async_redis(redis_cluster_url, connections=2), "appdb")
    try:
        reads = [reader.read_after(None, 10, block_ms=200) for _ in range(6)]
        assert await asyncio.gather(*reads) == [[]] * 6
    finally:
        await reader.close()


@pytest.mark.parametrize("connections", [None, 1])
async def test_the_asyncio_cluster_client_reads_the_feed(
    redis_cluster_url: str, connections: int | None
) -> None:
    reader = AsyncFeedReader(async_redis(redis_cluster_url, connections=connections), "appdb")
    try:
        assert await reader.last_id() is None
        assert (await reader.bounds()).trimmed is None
    finally:
        await reader.close()


async def test_no_reachable_node_is_a_connection_error() -> None:
    """As an unreachable plain Redis: what every caller already retries."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    with pytest.raises(redis.ConnectionError, match="Redis Cluster"):
        sync_redis(url)
    reader = AsyncFeedReader(async_redis(url, connections=2), "appdb")
    try:
        with pytest.raises(redis.ConnectionError, match="Redis Cluster"):
            await reader.last_id()
    finally:
        await reader.close()
