"""Bootstrap dumps as the snapshot of a `sync` without a cursor.

When a worker has built a fresh-enough dump of the shape (`pgsift warm`, or one
enqueued by `GET /v1/bootstrap`), the subscription streams its rows instead of
querying Postgres, then continues the feed from the dump's cursor (its feed
position plus its snapshot, whose transactions the replay skips). The dump is
leased while it is read, so the workers' clean-up leaves it alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import redis

from pgsift.middleware.dumps import snapshot as dumps
from pgsift.middleware.feed.reader import AsyncFeedReader
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.redis_clients import sync_redis
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

ROWS_PER_READ = 1000


class DumpRows:
    """One dump being read: its rows (JSON form, as clients get them) and where to continue."""

    def __init__(self, source: DumpSource, snapshot: dumps.DumpSnapshot) -> None:
        self._source = source
        self._snapshot = snapshot
        cursor = snapshot.cursor
        self.position = cursor.position
        self.stamp = cursor.snapshot

    async def rows(self) -> AsyncIterator[dict[str, Any]]:
        """The rows, decompressed in a worker thread a batch at a time."""
        client, database = self._source.client, self._source.database
        dump_id = self._snapshot.info.dump_id
        await asyncio.to_thread(dumps.lease, client, database, dump_id)
        try:
            rows: Iterator[dict[str, Any]] = self._snapshot.rows()
            while True:
                batch = await asyncio.to_thread(_take, rows)
                if not batch:
                    return
                for row in batch:
                    yield row
        finally:
            await asyncio.to_thread(dumps.release, client, database, dump_id)


class DumpSource:
    """Finds fresh dumps in the store the settings name (a directory, or Redis)."""

    def __init__(self, settings: Settings, database: str, reader: AsyncFeedReader) -> None:
        if not settings.redis_url:
            raise ValueError("dumps need redis_url")
        self.client: redis.Redis[bytes] = sync_redis(settings.redis_url)
        self.database = database
        self.store = dumps.open_store(settings, self.client, database)
        self.max_age_s = settings.dumps_max_age_s
        self._retention = AsyncFeedRetention(reader.client, reader.stream)

    async def find(self, shape: Shape, catalog: Catalog) -> DumpRows | None:
        feed = await self._retention.bounds()
        found = await asyncio.to_thread(
            dumps.find_dump_snapshot,
            self.store,
            shape,
            catalog,
            max_age_s=self.max_age_s,
            feed=feed,
        )
        return None if found is None else DumpRows(self, found)

    def close(self) -> None:
        self.client.close()


def _take(rows: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(itertools.islice(rows, ROWS_PER_READ))
