"""A consumer's view of the feed is fresh only once it has read what capture's heartbeat covers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.freshness import FeedFreshness
from pgsift.middleware.feed.heartbeat import HeartbeatReader, HeartbeatWriter
from pgsift.middleware.feed.writer import FencedError

DATABASE = "freshdb"
TOKEN = 7


class Consumer:
    """A consumer's delivered position, set by the test."""

    lsn = 0


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis[bytes]]:
    connection: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()  # type: ignore[attr-defined]


@pytest.fixture
def writer(redis_url: str) -> Iterator[HeartbeatWriter]:
    sync = redis.Redis.from_url(redis_url)
    sync.set(keys.capture_lock(DATABASE), f"{TOKEN}:test")
    yield HeartbeatWriter(sync, DATABASE, TOKEN)
    sync.close()


def freshness(client: redis.asyncio.Redis[bytes], consumer: Consumer) -> FeedFreshness:
    return FeedFreshness(
        HeartbeatReader(client, DATABASE), stale_after_s=5.0, delivered=lambda: consumer.lsn
    )


async def append(client: redis.asyncio.Redis[bytes], lsn: int) -> None:
    await client.xadd(keys.feed_stream(DATABASE), {"e": "x"}, id=f"{lsn}-0")


async def test_no_heartbeat_is_stale(client: redis.asyncio.Redis[bytes]) -> None:
    view = freshness(client, Consumer())
    await view.poll()
    assert not view.fresh()
    assert view.age_s() is None
    assert "no heartbeat from capture" in (view.problem() or "")


async def test_fresh_once_the_consumer_has_read_up_to_the_heartbeat(
    client: redis.asyncio.Redis[bytes], writer: HeartbeatWriter
) -> None:
    consumer = Consumer()
    view = freshness(client, consumer)
    await append(client, 100)
    writer.beat(confirmed_lsn=120, lag_s=0.1)
    await view.poll()
    # The heartbeat is recent, but the consumer has not read entry 100 yet.
    assert not view.fresh()
    assert "has not read the feed up to capture's heartbeat" in (view.problem() or "")
    consumer.lsn = 100
    assert view.fresh()
    assert view.problem() is None
    age = view.age_s()
    assert age is not None and age >= 0.1


async def test_an_old_heartbeat_is_stale_with_the_reason(
    client: redis.asyncio.Redis[bytes], writer: HeartbeatWriter
) -> None:
    view = freshness(client, Consumer())
    writer.beat(confirmed_lsn=1, lag_s=60.0)  # capture knew the feed complete a minute ago
    await view.poll()
    assert not view.fresh()
    assert "capture's newest heartbeat is 6" in (view.problem() or "")


async def test_a_deposed_leader_cannot_keep_the_heartbeat_alive(
    redis_url: str, writer: HeartbeatWriter
) -> None:
    sync = redis.Redis.from_url(redis_url)
    sync.set(keys.capture_lock(DATABASE), f"{TOKEN + 1}:the-next-leader")
    with pytest.raises(FencedError):
        writer.beat(confirmed_lsn=1, lag_s=0.0)
    assert sync.get(keys.capture_heartbeat(DATABASE)) is None
    sync.close()
