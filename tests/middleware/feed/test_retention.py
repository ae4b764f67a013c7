"""The retention rule: a cursor is usable iff no entry after it was trimmed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import encode_entry
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.retention import AsyncFeedRetention, FeedBounds, FeedRetention
from tests.middleware.capture.processes import redis_full

DB = "retention"


def append(client: redis.Redis[bytes], lsn: int, chunk: int = 0) -> str:
    entry = FeedEntry(lsn=lsn, xid=lsn, commit_time=datetime.now(UTC), changes=(), chunk=chunk)
    client.xadd(keys.feed_stream(DB), encode_entry(entry), id=entry.id)
    return entry.id


@pytest.mark.parametrize(
    ("trimmed", "last", "cursor", "retained"),
    [
        (None, None, "0-0", True),  # an empty feed: its start is a cursor
        (None, None, "5-0", False),  # past the end: another feed's cursor
        (None, "30-0", "0-0", True),  # handed out while the feed was empty
        (None, "30-0", "30-0", True),
        (None, "30-0", "31-0", False),
        ("10-2", "30-0", "0-0", False),  # entries after it were trimmed
        ("10-2", "30-0", "9-0", False),
        ("10-2", "30-0", "10-0", True),  # positions are LSNs: transaction 10 is whole
        ("10-2", "30-0", "10-2", True),
        ("10-2", "30-0", "20-0", True),
        ("10-2", None, "10-2", True),  # everything trimmed: nothing after 10 was lost
        ("10-2", None, "11-0", False),
    ],
)
def test_retains(trimmed: str | None, last: str | None, cursor: str, retained: bool) -> None:
    assert FeedBounds(trimmed, last).retains(cursor) is retained


def test_end_is_the_newest_entry_or_the_last_trimmed() -> None:
    assert FeedBounds(None, None).end == "0-0"
    assert FeedBounds(None, "30-0").end == "30-0"
    assert FeedBounds("10-2", "30-0").end == "30-0"
    assert FeedBounds("10-2", None).end == "10-2"
    assert FeedBounds("10-2", None).retains(FeedBounds("10-2", None).end)


def test_a_cursor_of_the_empty_feed_stays_valid_until_a_trim(redis_url: str) -> None:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    retention = FeedRetention.for_database(client, DB)
    cursor = retention.bounds().end
    assert cursor == "0-0" and retention.retains(cursor)
    for lsn in (10, 20, 30):
        append(client, lsn)
    assert retention.retains(cursor)  # nothing after it is gone
    assert retention.trim("20-0") == 1
    assert client.get(keys.feed_trimmed(DB)) == b"10-0"
    assert not retention.retains(cursor)
    assert retention.retains("10-0") and retention.retains("30-0")
    client.close()


def test_trim_removes_below_minid_and_only_raises_the_marker(redis_url: str) -> None:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    retention = FeedRetention.for_database(client, DB)
    assert retention.trim("5-0") == 0  # an empty feed: no marker
    append(client, 1)
    assert retention.trim("0-0") == 0  # nothing is below the start
    assert retention.trim("1-0") == 0
    assert client.get(keys.feed_trimmed(DB)) is None
    for lsn, chunk in [(9, 0), (10, 0), (10, 1), (99999999999999999, 0)]:
        append(client, lsn, chunk)
    assert retention.trim("11-0") == 4
    assert retention.bounds() == FeedBounds("10-1", "99999999999999999-0")
    assert retention.trim("11-0") == 0  # nothing below it any more: the marker stays
    # Exact comparison of IDs wider than a Lua number's 53 bits.
    assert retention.trim("100000000000000000-0") == 1
    assert retention.bounds() == FeedBounds("99999999999999999-0", None)
    assert retention.bounds().end == "99999999999999999-0"
    append(client, 200000000000000001)
    assert retention.trim("200000000000000002-0") == 1
    assert client.get(keys.feed_trimmed(DB)) == b"200000000000000001-0"
    client.set(keys.feed_trimmed(DB), "900000000000000000-0")  # it never moves down
    append(client, 300000000000000001)
    assert retention.trim("300000000000000002-0") == 1
    assert client.get(keys.feed_trimmed(DB)) == b"900000000000000000-0"
    client.close()


async def test_async_bounds(redis_url: str) -> None:
    sync: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    append(sync, 10)
    append(sync, 20)
    FeedRetention.for_database(sync, DB).trim("20-0")
    sync.close()
    client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    retention = AsyncFeedRetention.for_database(client, DB)
    assert await retention.bounds() == FeedBounds("10-0", "20-0")
    assert await retention.retains("10-0") and not await retention.retains("0-0")
    await client.aclose()  # type: ignore[attr-defined]


async def test_bounds_are_read_while_redis_is_out_of_memory(redis_url: str) -> None:
    """Redis refuses MULTI past maxmemory; the tailer and every subscription read the bounds."""
    sync: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    append(sync, 10)
    client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    try:
        with redis_full(redis_url):
            assert FeedRetention.for_database(sync, DB).bounds() == FeedBounds(None, "10-0")
            assert await AsyncFeedRetention.for_database(client, DB).bounds() == FeedBounds(
                None, "10-0"
            )
    finally:
        sync.close()
        await client.aclose()  # type: ignore[attr-defined]
