"""The one dump finder: a fresh-enough complete dump of a shape, leased, then verified.

`fresh_dump` picks the newest complete dump of the shape that is young
enough, of the current schema, and whose feed position the feed still
continues (`FeedBounds.retains`: nothing after it trimmed; else its cursor
would be useless). `DumpFinder.find` leases it and only then checks that it is
still servable (`pgsift.middleware.dumps.leases`): a stale-dump clean-up that
ran in between shows there, and one that runs later sees the lease.
Every bootstrap that may start from a dump (`sync`, `/v1/bootstrap`) finds it here.
"""

from __future__ import annotations

import redis

from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.dumps import leases
from pgsift.middleware.dumps.read import DumpSnapshot
from pgsift.middleware.dumps.store import DumpInfo, DumpStore
from pgsift.middleware.feed.bounds import FeedBounds


def fresh_dump(
    store: DumpStore, layout: ShapeLayout, *, max_age_s: float, feed: FeedBounds
) -> DumpInfo | None:
    """The newest usable complete dump of `layout`'s shape, or None (not leased)."""
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


class DumpFinder:
    """Finds and leases dumps of one database's store (blocking: run it in a thread)."""

    def __init__(
        self, client: redis.Redis[bytes], database: str, store: DumpStore, *, max_age_s: float
    ) -> None:
        self.client = client
        self.database = database
        self.store = store
        self.max_age_s = max_age_s

    def find(self, layout: ShapeLayout, feed: FeedBounds) -> DumpSnapshot | None:
        """A leased fresh dump of `layout`'s shape; None when there is none, or it went
        meanwhile. Whoever gets one must `release` it."""
        info = fresh_dump(self.store, layout, max_age_s=self.max_age_s, feed=feed)
        if info is None:
            return None
        leases.lease(self.client, self.database, info.dump_id)
        # A lease left on a dump not served only delays a drop nobody waits for.
        if not leases.still_servable(self.client, self.database, self.store, info):
            return None
        return DumpSnapshot(self.store, info)

    def release(self, dump: DumpSnapshot) -> None:
        """Served: the lease shortens to the grace the client's sync needs."""
        leases.release(self.client, self.database, dump.info.dump_id)
