"""Finding a fresh-enough complete dump of a shape, and reading it as a snapshot.

The gateway's bootstrap endpoint and the GraphQL `sync` without a cursor both
start from here: `fresh_dump` picks the newest complete dump of the shape that
is young enough, of the current schema, and whose feed position the feed still
continues (`FeedBounds.retains`: nothing after it trimmed; else its cursor would
be useless); `DumpSnapshot` streams
its rows and gives the cursor to continue from. While a dump is being read it
holds a lease, so `drop_stale_dumps` leaves it alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.cursor import BootstrapCursor
from pgsift.middleware.dumps.file_store import FileDumpStore
from pgsift.middleware.dumps.format import body_rows, checked_body, decompressed_body
from pgsift.middleware.dumps.redis_store import RedisDumpStore
from pgsift.middleware.dumps.source import ShapeLayout
from pgsift.middleware.dumps.store import DumpInfo, DumpStore
from pgsift.middleware.feed.retention import FeedBounds
from pgsift.middleware.settings import Settings
from pgsift.subscriptions import values
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

LEASE_S = 900.0
# After serving, the client is about to sync from the dump's cursor.
CURSOR_GRACE_S = 600.0


def open_store(settings: Settings, client: redis.Redis[bytes], database: str) -> DumpStore:
    """The store the settings name: the `dumps_dir` directory if set, else Redis."""
    if settings.dumps_dir:
        return FileDumpStore(settings.dumps_dir, database)
    return RedisDumpStore(client, database)


def fresh_dump(
    store: DumpStore, layout: ShapeLayout, *, max_age_s: float, feed: FeedBounds
) -> DumpInfo | None:
    """The newest usable complete dump of `layout`'s shape, or None."""
    for info in store.dumps(layout.shape_key):
        header = info.header
        if info.age_s > max_age_s:
            break  # newest first: the rest are older still
        if (header.schema_hash, header.columns) != (layout.schema_hash, layout.columns):
            continue
        if not feed.retains(header.feed_position):
            continue  # the feed after its position was trimmed (or is another feed)
        return info
    return None


def find_dump_snapshot(
    store: DumpStore,
    shape: Shape,
    catalog: Catalog,
    *,
    max_age_s: float,
    feed: FeedBounds,
) -> DumpSnapshot | None:
    """For the GraphQL `sync` without a cursor: a fresh dump of `shape` to start from, or None.

    Iterate `typed_rows()` (sync; wrap in `iterate_in_threadpool` under asyncio)
    and continue the feed from `.cursor` (skip entries whose xid `cursor.skips`).
    """
    info = fresh_dump(
        store, ShapeLayout.of(shape, catalog), max_age_s=max_age_s, feed=feed
    )
    return DumpSnapshot(store, info) if info is not None else None


@dataclass(frozen=True, slots=True)
class DumpSnapshot:
    """A complete dump read as the snapshot of a shape."""

    store: DumpStore
    info: DumpInfo

    @property
    def cursor(self) -> BootstrapCursor:
        return self.info.header.cursor

    @property
    def count(self) -> int:
        return self.info.trailer.count

    def compressed(self) -> Iterator[bytes]:
        """The whole bootstrap response as stored: one zstd frame, checked."""
        return checked_body(self.store.body(self.info), self.info.trailer)

    def ndjson(self) -> Iterator[bytes]:
        """The whole bootstrap response (header, rows, end line) in blocks, checked."""
        return decompressed_body(self.store.body(self.info), self.info.trailer)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row with values in JSON form (`values.to_json`), as clients get them."""
        return body_rows(self.store.body(self.info), self.info.trailer)

    def typed_rows(self) -> Iterator[dict[str, Any]]:
        """Each row with Python values as psycopg returns them (for predicates)."""
        types = dict(zip(self.info.header.columns, self.info.header.types, strict=True))
        for row in self.rows():
            yield {c: None if v is None else values.from_json(types[c], v) for c, v in row.items()}


def lease(
    client: redis.Redis[bytes], database: str, dump_id: str, seconds: float = LEASE_S
) -> None:
    """Keep `dump_id` from being dropped for `seconds` (it is being served)."""
    client.zadd(keys.dump_leases(database), {dump_id: time.time() + seconds})


def release(client: redis.Redis[bytes], database: str, dump_id: str) -> None:
    """Served: keep it (and the feed after its position) a little longer for the client's sync."""
    client.zadd(keys.dump_leases(database), {dump_id: time.time() + CURSOR_GRACE_S})


def leased_ids(client: redis.Redis[bytes], database: str) -> set[str]:
    """Dumps some gateway is serving now (expired leases are forgotten on the way)."""
    key = keys.dump_leases(database)
    client.zremrangebyscore(key, "-inf", time.time())
    return {i.decode() if isinstance(i, bytes) else str(i) for i in client.zrange(key, 0, -1)}
