"""Finding a fresh-enough complete dump of a shape, and reading it as a snapshot.

The gateway's bootstrap endpoint and the GraphQL `sync` without a cursor both
start from here: `fresh_dump` picks the newest complete dump of the shape that
is young enough, of the current schema, and whose feed position the feed still
continues (`FeedBounds.retains`: nothing after it trimmed; else its cursor would
be useless); `DumpSnapshot` streams
its rows and gives the cursor to continue from. While a dump is being read it
holds a lease, so `drop_stale_dumps` leaves it alone (`lease_fresh_dump` takes
it; `claim_for_drop` is the other side).
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
from pgsift.subscriptions import wire
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

LEASE_S = 900.0
# After serving, the client is about to sync from the dump's cursor.
CURSOR_GRACE_S = 600.0
# How long a dump claimed for dropping stays unservable (its deletion follows at once).
DROPPING_TTL_S = 3600


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
        """Each row in its wire form (`pgsift.subscriptions.wire`), as clients get them."""
        return body_rows(self.store.body(self.info), self.info.trailer)

    def typed_rows(self) -> Iterator[dict[str, Any]]:
        """Each row with Python values as psycopg returns them (for predicates)."""
        types = dict(zip(self.info.header.columns, self.info.header.types, strict=True))
        for row in self.rows():
            yield {c: None if v is None else wire.from_json(types[c], v) for c, v in row.items()}


def lease(
    client: redis.Redis[bytes], database: str, dump_id: str, seconds: float = LEASE_S
) -> None:
    """Keep `dump_id` from being dropped for `seconds` (it is being served).

    A lease never shortens another gateway's lease of the same dump (GT). Taken
    after choosing the dump, it must be followed by `still_servable`: the dump
    may have been dropped in between (`lease_fresh_dump` does both).
    """
    client.zadd(keys.dump_leases(database), {dump_id: time.time() + seconds}, gt=True)


def release(client: redis.Redis[bytes], database: str, dump_id: str) -> None:
    """Served: keep it (and the feed after its position) a little longer for the client's sync."""
    client.zadd(keys.dump_leases(database), {dump_id: time.time() + CURSOR_GRACE_S}, gt=True)


def still_servable(
    client: redis.Redis[bytes], database: str, store: DumpStore, info: DumpInfo
) -> bool:
    """After `lease`: the dump was neither claimed for dropping nor dropped meanwhile.

    With `claim_for_drop` this closes the race between choosing a dump and
    leasing it: a drop claimed before the lease shows here; one after it sees
    the lease (or its WATCH fails) and leaves the dump alone.
    """
    if client.exists(keys.dump_dropping(database, info.dump_id)):
        return False
    return any(i.dump_id == info.dump_id for i in store.dumps(info.header.shape_key))


def lease_fresh_dump(
    client: redis.Redis[bytes],
    database: str,
    store: DumpStore,
    layout: ShapeLayout,
    *,
    max_age_s: float,
    feed: FeedBounds,
) -> DumpInfo | None:
    """`fresh_dump`, leased for serving; None when there is none, or it went meanwhile."""
    info = fresh_dump(store, layout, max_age_s=max_age_s, feed=feed)
    if info is None:
        return None
    lease(client, database, info.dump_id)
    # A lease left on a dump not served only delays a drop nobody waits for.
    return info if still_servable(client, database, store, info) else None


def claim_for_drop(client: redis.Redis[bytes], database: str, dump_id: str) -> bool:
    """Mark `dump_id` as being dropped, unless it is leased; True: delete it now.

    Atomic with the leases (WATCH): a lease taken while claiming makes the claim fail.
    """
    leases = keys.dump_leases(database)
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(leases)
            until: Any = pipe.zscore(leases, dump_id)  # immediate while WATCHing
            if until is not None and float(until) > time.time():
                return False
            pipe.multi()
            pipe.set(keys.dump_dropping(database, dump_id), "1", ex=DROPPING_TTL_S)
            pipe.execute()
        except redis.WatchError:
            return False  # a lease changed meanwhile: try again at the next run
    return True


def leased_ids(client: redis.Redis[bytes], database: str) -> set[str]:
    """Dumps some gateway is serving now (expired leases are forgotten on the way)."""
    key = keys.dump_leases(database)
    client.zremrangebyscore(key, "-inf", time.time())
    return {i.decode() if isinstance(i, bytes) else str(i) for i in client.zrange(key, 0, -1)}
