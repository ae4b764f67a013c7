"""Fenced, idempotent appends and reading them back (sync and asyncio), on a real Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import redis

from pgsift.middleware.capture.leader import LeaderLock
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.reader import AsyncFeedReader, FeedReader
from pgsift.middleware.feed.writer import FeedWriter, FencedError
from pgsift.subscriptions.change import Change

DB = "appdb"


def tx(lsn: int, chunk: int = 0, *, last: bool = True) -> FeedEntry:
    change = Change("public.t", "insert", {"id": lsn}, {"id": lsn, "chunk": chunk}, None)
    return FeedEntry(lsn, lsn // 10, datetime(2026, 1, 1, tzinfo=UTC), (change,), chunk, last)


@pytest.fixture
def client(redis_url: str) -> redis.Redis[bytes]:
    return redis.Redis.from_url(redis_url)


def leader(client: redis.Redis[bytes], ttl_s: float = 30.0) -> LeaderLock:
    lock = LeaderLock(client, DB, ttl_s=ttl_s)
    assert lock.try_acquire() and lock.token is not None
    return lock


def test_appends_in_order_and_skips_what_is_stored(client: redis.Redis[bytes]) -> None:
    lock = leader(client)
    assert lock.token is not None
    writer = FeedWriter(client, DB, lock.token)
    first = writer.append([tx(100), tx(200, 0, last=False), tx(200, 1)])
    assert (first.appended, first.skipped) == (3, 0)
    # A restarted capture re-sends from its confirmed position: old IDs are skipped,
    # the new ones appended, in one call.
    again = writer.append([tx(200, 0, last=False), tx(200, 1), tx(300)])
    assert (again.appended, again.skipped) == (1, 2)
    reader = FeedReader(client, DB)
    entries = reader.read_after(None, count=10)
    assert [e.id for e in entries] == ["100-0", "200-0", "200-1", "300-0"]
    assert [e.last for e in entries] == [True, False, True, True]
    assert entries[1].changes[0].new == {"id": 200, "chunk": 0}
    assert [e.id for e in reader.read_after("200-1")] == ["300-0"]
    assert reader.read_after("300-0", block_ms=10) == []
    assert (reader.first_id(), reader.last_id()) == ("100-0", "300-0")


def test_empty_feed_has_no_ids(client: redis.Redis[bytes]) -> None:
    reader = FeedReader(client, DB)
    assert (reader.first_id(), reader.last_id()) == (None, None)
    assert reader.read_after(None) == []


def test_an_old_leader_is_fenced_off(client: redis.Redis[bytes]) -> None:
    old = leader(client, ttl_s=0.05)
    assert old.token is not None
    old_writer = FeedWriter(client, DB, old.token)
    old_writer.append([tx(100)])
    # The old leader stalls past its expiry and a standby takes over.
    new = LeaderLock(client, DB, ttl_s=30)
    assert new.acquire(threading.Event(), poll_s=0.02)
    assert new.token is not None and new.token > old.token
    assert not old.renew()
    with pytest.raises(FencedError, match="lock lost"):
        old_writer.append([tx(200)])
    FeedWriter(client, DB, new.token).append([tx(200)])
    old.release()  # must not release the new leader's lock
    assert new.renew()
    assert [e.id for e in FeedReader(client, DB).read_after(None)] == ["100-0", "200-0"]


def test_no_lock_no_append(client: redis.Redis[bytes]) -> None:
    with pytest.raises(FencedError):
        FeedWriter(client, DB, 1).append([tx(100)])
    assert FeedReader(client, DB).last_id() is None


def test_standby_waits_while_the_leader_renews(client: redis.Redis[bytes]) -> None:
    first = leader(client, ttl_s=30)
    standby = LeaderLock(client, DB, ttl_s=30)
    assert not standby.try_acquire()
    first.release()
    assert standby.try_acquire()


async def test_async_reader(client: redis.Redis[bytes], redis_url: str) -> None:
    lock = leader(client)
    assert lock.token is not None
    FeedWriter(client, DB, lock.token).append([tx(100), tx(200)])
    reader = AsyncFeedReader.from_url(redis_url, DB)
    try:
        assert [e.id for e in await reader.read_after("0-0", count=1)] == ["100-0"]
        assert [e.id for e in await reader.read_after("100-0", block_ms=10)] == ["200-0"]
        assert await reader.read_after("200-0", block_ms=10) == []
        assert (await reader.first_id(), await reader.last_id()) == ("100-0", "200-0")
    finally:
        await reader.close()

