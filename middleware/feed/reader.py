"""Reading a database's feed: the one place that turns stream entries into FeedEntries.

    reader = FeedReader.from_url("redis://...", "appdb")
    for entry in reader.read_after(cursor, count=100, block_ms=5000):
        ...                      # FeedEntry, in commit order
        cursor = entry.id        # resume after it

`AsyncFeedReader` has the same methods as coroutines (redis.asyncio).
A cursor is a `FeedPosition`; `None` (or `START`) means "from the start of the
retained feed". A transaction split into chunks is several entries with the
same `lsn` and `chunk` 0, 1, ...; the one with `last=True` ends it, so cursors
handed to clients should be IDs of entries with `last=True`.
`first_id()` / `last_id()` are None for an empty or missing feed: a cursor
below `first_id()` points into trimmed history (the client must refetch).
A client passed in must return bytes (redis-py's default, decode_responses=False).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import decode_entry
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import START, FeedPosition


class FeedReader:
    """Synchronous reader of `keys.feed_stream(database)`."""

    def __init__(self, client: redis.Redis[bytes], database: str) -> None:
        self.client = client
        self.stream = keys.feed_stream(database)

    @classmethod
    def from_url(cls, url: str, database: str) -> FeedReader:
        return cls(redis.Redis.from_url(url), database)

    def read_after(
        self, cursor: FeedPosition | None, count: int = 100, block_ms: int | None = None
    ) -> list[FeedEntry]:
        """Up to `count` entries after `cursor`; waits up to `block_ms` ms if there are none."""
        reply = self.client.xread({self.stream: cursor or START}, count=count, block=block_ms)
        return _entries(reply)

    def first_id(self) -> FeedPosition | None:
        """ID of the oldest retained entry."""
        return _id_of(self.client.xrange(self.stream, count=1))

    def last_id(self) -> FeedPosition | None:
        """ID of the newest entry."""
        return _id_of(self.client.xrevrange(self.stream, count=1))

    def close(self) -> None:
        self.client.close()


class AsyncFeedReader:
    """asyncio reader of `keys.feed_stream(database)`; same methods as FeedReader."""

    def __init__(self, client: redis.asyncio.Redis[bytes], database: str) -> None:
        self.client = client
        self.stream = keys.feed_stream(database)

    @classmethod
    def from_url(cls, url: str, database: str) -> AsyncFeedReader:
        return cls(redis.asyncio.Redis.from_url(url), database)

    async def read_after(
        self, cursor: FeedPosition | None, count: int = 100, block_ms: int | None = None
    ) -> list[FeedEntry]:
        """Up to `count` entries after `cursor`; waits up to `block_ms` ms if there are none."""
        reply = await self.client.xread({self.stream: cursor or START}, count=count, block=block_ms)
        return _entries(reply)

    async def first_id(self) -> FeedPosition | None:
        return _id_of(await self.client.xrange(self.stream, count=1))

    async def last_id(self) -> FeedPosition | None:
        return _id_of(await self.client.xrevrange(self.stream, count=1))

    async def close(self) -> None:
        await self.client.aclose()  # type: ignore[attr-defined]  # stubs predate it


def _entries(reply: Any) -> list[FeedEntry]:
    # XREAD answers [[stream, [(id, fields), ...]]] (RESP2) or {stream: [[...]]} (RESP3).
    if not reply:
        return []
    items = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
    return [decode_entry(stream_id, fields) for stream_id, fields in items]


def _id_of(items: Any) -> FeedPosition | None:
    return FeedPosition.decoded(items[0][0]) if items else None
