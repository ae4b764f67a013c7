"""What a session's catch-up reads: the feed after its cursor, checked for gaps.

A session catches up from where its snapshot (or cursor) left off to the
tailer's handoff position (`session`, step 4). It reads the entries the tailer
holds decoded when it holds them (a contiguous run: nothing can be missing in
it), Redis otherwise; a read from Redis is checked against the feed's retention
*after* it, because a trim that overtook the cursor before the read made XREAD
skip to later entries without a sign.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis.exceptions

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.fanout import FeedSource
from pgsift.middleware.gateway.recent import RecentEntries
from pgsift.middleware.gateway.routed import RoutedTx

log = logging.getLogger(__name__)

CATCH_UP_BATCH = 500
CATCH_UP_BLOCK_MS = 1000


class CatchUpRouter(Protocol):
    """Routes the feed entries of a catch-up for one session (a `TxRouter`)."""

    def route(self, entry: FeedEntry) -> Mapping[Any, RoutedTx] | None: ...


@dataclass
class CatchUpEnd:
    """How far a catch-up got: the cursor for `upToDate`, and the last LSN it covers."""

    position: FeedPosition
    done: int


async def entries_after(
    cursor: FeedPosition,
    recent: RecentEntries,
    reader: FeedSource,
    retention: AsyncFeedRetention,
) -> list[FeedEntry] | None:
    """The next entries after `cursor`; None when the client must refetch (entries
    after it were trimmed, or one does not decode: the tailer stepped over it and
    told its subscribers to refetch). Redis errors are raised."""
    entries = recent.after(cursor, CATCH_UP_BATCH)
    if entries is not None:
        return entries
    try:
        entries = await reader.read_after(cursor, CATCH_UP_BATCH, CATCH_UP_BLOCK_MS)
    except (redis.exceptions.RedisError, OSError):
        raise
    except Exception:
        log.exception("the catch-up after %s met an unreadable feed entry", cursor)
        return None
    if not await retention.retains(cursor):
        return None
    return entries
