"""Writing feed entries directly (what capture would append), for tests without capture."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import encode_entry
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.change import Change


def append(client: redis.Redis[bytes], database: str, lsn: int, *, table: str = "public.t",
           changes: int = 1, at: float | None = None, chunk: int = 0) -> str:
    """Append one entry committed at `at` (Unix time) with `changes` inserts into `table`."""
    entry = FeedEntry(
        lsn=lsn,
        xid=1000 + lsn,
        commit_time=datetime.fromtimestamp(at if at is not None else time.time(), UTC),
        changes=tuple(Change(table, "insert", {"id": n}, {"id": n}, None)
                      for n in range(changes)),
        chunk=chunk,
    )
    client.xadd(keys.feed_stream(database), encode_entry(entry), id=entry.id)
    return entry.id
