"""Reading a database's feed: the one place that sends pgsift's feed queries to Redis.

    reader = FeedReader.from_url("redis://...", "appdb")
    for entry in reader.read_after(cursor, count=100, block_ms=5000):
        ...                      # FeedEntry, in commit order
        cursor = entry.id        # resume after it (a FeedPosition)
    reader.run(reader.queries.entries_before(position, 100))   # any other read

`AsyncFeedReader` has the same methods as coroutines (redis.asyncio). Both
are thin shells around the queries of `pgsift.middleware.feed.queries`, which
say what to send and how to read the replies.
A cursor is a `FeedPosition`; `None` (or `START`) means "from the start of the
retained feed". A transaction split into chunks is several entries with the
same `lsn` and `chunk` 0, 1, ...; the one with `last=True` ends it, so cursors
handed to clients should be IDs of entries with `last=True`.
`first_id()` / `last_id()` are None for an empty or missing feed; `bounds()`
says which positions the feed still continues (`pgsift.middleware.feed.bounds`).
A client passed in must return bytes (redis-py's default, decode_responses=False).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.bounds import FeedBounds
from pgsift.middleware.feed.coalesce import Coalesced
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.queries import FeedQueries, FeedQuery
from pgsift.middleware.redis_clients import async_redis, sync_redis

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    SyncRedis = redis.Redis[bytes]
    AsyncRedis = redis.asyncio.Redis[bytes]

T = TypeVar("T")
C = TypeVar("C")


class FeedClient(Generic[C]):
    """A Redis client and the queries of one feed stream: what both readers hold."""

    def __init__(self, client: C, database: str) -> None:
        self._open(client, keys.feed_stream(database))

    def _open(self, client: C, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.queries = FeedQueries(stream)


class FeedReader(FeedClient["SyncRedis"]):
    """Synchronous reader of `keys.feed_stream(database)`."""

    @classmethod
    def from_url(cls, url: str, database: str) -> FeedReader:
        return cls(sync_redis(url), database)

    def run(self, query: FeedQuery[T]) -> T:
        """Send `query`'s command and read its reply."""
        return query.parse(self.client.execute_command(*query.command))

    def read_after(
        self, cursor: FeedPosition | None, count: int = 100, block_ms: int | None = None
    ) -> list[FeedEntry]:
        """Up to `count` entries after `cursor`; waits up to `block_ms` ms if there are none."""
        return self.run(self.queries.read_after(cursor, count, block_ms))

    def first_id(self) -> FeedPosition | None:
        """ID of the oldest retained entry."""
        return self.run(self.queries.first())

    def last_id(self) -> FeedPosition | None:
        """ID of the newest entry."""
        return self.run(self.queries.last())

    def bounds(self) -> FeedBounds:
        return self.run(self.queries.bounds())

    def close(self) -> None:
        self.client.close()


class AsyncFeedReader(FeedClient["AsyncRedis"]):
    """asyncio reader of `keys.feed_stream(database)`; same methods as FeedReader."""

    def _open(self, client: AsyncRedis, stream: str) -> None:
        super()._open(client, stream)
        self._bounds = Coalesced(self._read_bounds)

    @classmethod
    def from_url(cls, url: str, database: str) -> AsyncFeedReader:
        return cls(async_redis(url), database)

    async def run(self, query: FeedQuery[T]) -> T:
        reply = await self.client.execute_command(*query.command)  # type: ignore[no-untyped-call]  # untyped in the stubs
        return query.parse(reply)

    async def read_after(
        self, cursor: FeedPosition | None, count: int = 100, block_ms: int | None = None
    ) -> list[FeedEntry]:
        return await self.run(self.queries.read_after(cursor, count, block_ms))

    async def first_id(self) -> FeedPosition | None:
        return await self.run(self.queries.first())

    async def last_id(self) -> FeedPosition | None:
        return await self.run(self.queries.last())

    async def bounds(self) -> FeedBounds:
        """Concurrent callers share one read, issued after each of them asked
        (`pgsift.middleware.feed.coalesce`)."""
        return await self._bounds()

    async def _read_bounds(self) -> FeedBounds:
        return await self.run(self.queries.bounds())

    async def close(self) -> None:
        await self.client.aclose()  # type: ignore[attr-defined]  # stubs predate it
