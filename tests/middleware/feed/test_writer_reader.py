"""Fenced, idempotent appends and reading them back (sync and asyncio), on a real Redis
and on a real three-master Redis Cluster (`redis+cluster://`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
import zstandard

from pgsift.middleware.capture.leader import LeaderLock
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import COMPRESSED_FIELD
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.reader import AsyncFeedReader, FeedReader
from pgsift.middleware.feed.retention import FeedRetention
from pgsift.middleware.feed.writer import FeedConflictError, FeedWriter, FencedError, encode
from pgsift.middleware.redis_clients import sync_redis
from pgsift.subscriptions.change import Change

DB = "appdb"


def tx(lsn: int, chunk: int = 0, *, last: bool = True) -> FeedEntry:
    change = Change("public.t", "insert", {"id": lsn}, {"id": lsn, "chunk": chunk}, None)
    return FeedEntry(lsn, lsn // 10, datetime(2026, 1, 1, tzinfo=UTC), (change,), chunk, last)


@pytest.fixture(params=["redis", "cluster"])
def feed_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    return redis_url if request.param == "redis" else request.getfixturevalue("redis_cluster_url")


@pytest.fixture
def client(feed_url: str) -> Iterator[redis.Redis[bytes]]:
    client = sync_redis(feed_url)
    yield client
    client.close()


@pytest.fixture
def writer(client: redis.Redis[bytes]) -> FeedWriter:
    """A writer holding the capture lock."""
    lock = leader(client)
    assert lock.token is not None
    return FeedWriter(client, DB, lock.token)


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


def chunks(lsn: int, sizes: list[int]) -> list[FeedEntry]:
    """Transaction `lsn` of sum(sizes) changes, cut into chunks of these sizes."""
    numbers = iter(range(sum(sizes)))
    cut = []
    for n, size in enumerate(sizes):
        changes = tuple(
            Change("public.t", "insert", {"id": i}, {"id": i}, None)
            for i in [next(numbers) for _ in range(size)]
        )
        cut.append(FeedEntry(lsn, 7, datetime(2026, 1, 1, tzinfo=UTC), changes, n,
                             n == len(sizes) - 1))
    return cut


def test_a_transaction_re_sent_in_other_chunks_is_refused_loudly(
    client: redis.Redis[bytes], writer: FeedWriter
) -> None:
    """Stored cut 2+2 (then capture crashed before confirming), re-sent cut 1+1+1+1:
    skipping 200-0 and 200-1 and appending 200-2 and 200-3 would repeat changes 2 and 3;
    re-sent cut 3+1 ending at 200-1 would leave the stored 200-1 (not last) unfinished."""
    writer.append(chunks(200, [2, 2]))
    for sizes in ([1, 1, 1, 1], [3, 1], [4]):
        with pytest.raises(FeedConflictError, match="200-0"):
            writer.append([tx(100), *chunks(200, sizes), tx(300)])
    entries = FeedReader(client, DB).read_after(None, count=10)
    assert [(e.id, len(e.changes), e.last) for e in entries] == [("200-0", 2, False),
                                                                 ("200-1", 2, True)]
    again = writer.append([*chunks(200, [2, 2]), tx(300)])  # the same cut: fine
    assert (again.appended, again.skipped) == (1, 2)


def test_a_re_sent_entry_missing_between_stored_ones_is_refused(
    client: redis.Redis[bytes], writer: FeedWriter
) -> None:
    writer.append([tx(100), tx(300)])
    with pytest.raises(FeedConflictError, match="200-0 is missing"):
        writer.append([tx(200), tx(400)])
    assert FeedReader(client, DB).last_id() == "300-0"


def test_re_sent_entries_trimmed_or_stored_in_another_encoding_are_skipped(
    client: redis.Redis[bytes], writer: FeedWriter
) -> None:
    writer.append([tx(100), tx(200), tx(300)])
    FeedRetention(client, keys.feed_stream(DB)).trim("300-0")
    entry_id, _, plain = encode(tx(300))
    other_encoding = (entry_id, COMPRESSED_FIELD, zstandard.compress(plain))
    result = writer.append_encoded([encode(tx(100)), encode(tx(200)), other_encoding,
                                    encode(tx(400))])
    assert (result.appended, result.skipped) == (1, 3)
    assert [e.id for e in FeedReader(client, DB).read_after(None)] == ["300-0", "400-0"]


def test_a_re_sent_entry_without_its_schema_flag_is_skipped(
    client: redis.Redis[bytes], writer: FeedWriter
) -> None:
    """Capture killed after storing a flagged transaction, before confirming the slot,
    re-sends it unflagged (the fingerprints were saved with it): the same chunk."""
    writer.append([tx(100), replace(tx(200), schema_changes=("public.t",))])
    result = writer.append([tx(100), tx(200), tx(300)])
    assert (result.appended, result.skipped) == (1, 2)
    entries = FeedReader(client, DB).read_after(None)
    assert [(e.id, e.schema_changes) for e in entries] == [
        ("100-0", ()), ("200-0", ("public.t",)), ("300-0", ())]


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


async def test_async_reader(client: redis.Redis[bytes], feed_url: str) -> None:
    lock = leader(client)
    assert lock.token is not None
    FeedWriter(client, DB, lock.token).append([tx(100), tx(200)])
    reader = AsyncFeedReader.from_url(feed_url, DB)
    try:
        assert [e.id for e in await reader.read_after("0-0", count=1)] == ["100-0"]
        assert [e.id for e in await reader.read_after("100-0", block_ms=10)] == ["200-0"]
        assert await reader.read_after("200-0", block_ms=10) == []
        assert (await reader.first_id(), await reader.last_id()) == ("100-0", "200-0")
    finally:
        await reader.close()

