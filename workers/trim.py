"""Feed retention and dump cleanup: `trim_feed` and `drop_stale_dumps` (RQ jobs).

The feed is trimmed by age (`feed_max_age_s`) and length (`feed_max_len`), but
never past the position of a dump that is still listed: a client bootstrapped
from it continues from that position. Stream IDs are commit LSNs, not times,
so the age cut is found by a binary search over LSNs (each probe one XRANGE).
Entries are removed only through `FeedRetention.trim`, which records the last
ID removed: that marker is what tells a trimmed cursor from a valid old one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from pgsift.middleware.dumps.leases import claim_for_drop, leased_ids
from pgsift.middleware.feed import keys as feed_keys
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.retention import FeedRetention
from pgsift.workers.context import JobContext

log = logging.getLogger(__name__)

WALK_BATCH = 5000


@dataclass(frozen=True, slots=True)
class TrimResult:
    trimmed: int
    first_id: FeedPosition | None  # the oldest entry kept
    floor: FeedPosition | None  # the oldest dump position that held the trim back

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def trim_feed_in(context: JobContext, *, now: float | None = None) -> TrimResult:
    """Trim `context`'s feed to the configured retention, keeping what dumps need."""
    client, settings = context.client, context.settings
    stream = feed_keys.feed_stream(context.database)
    now = time.time() if now is None else now
    cuts = [
        _age_cut(context, now - settings.feed_max_age_s),
        _length_cut(context, settings.feed_max_len),
    ]
    wanted = max((c for c in cuts if c is not None), default=None)
    floor = _dump_floor(context)
    if wanted is None:
        return TrimResult(0, context.reader.first_id(), floor)
    cut = wanted
    if floor is not None:
        # Keep every entry after the floor: MINID keeps IDs >= the one after it.
        cut = min(cut, floor.successor())
    # Never split a transaction: keep all chunks of the one the cut lands in.
    minid = cut.transaction_start()
    # Through the retention marker: a cursor after the last entry removed stays valid.
    trimmed = FeedRetention(client, stream).trim(minid)
    if trimmed:
        log.info("feed %s: trimmed %d entries before %s (dump floor %s)",
                 stream, trimmed, minid, floor)
    return TrimResult(trimmed, context.reader.first_id(), floor)


def _dump_floor(context: JobContext) -> FeedPosition | None:
    return min((info.header.feed_position for info in context.store.all_dumps()), default=None)


def _age_cut(context: JobContext, oldest_time: float) -> FeedPosition | None:
    """The ID of the first entry committed at or after `oldest_time`."""
    first, last = context.reader.first_id(), context.reader.last_id()
    if first is None or last is None:
        return None
    lo, hi = first.lsn, last.lsn + 1
    oldest = _entry_at_or_after(context, lo)
    if oldest is None or oldest.commit_time.timestamp() >= oldest_time:
        return None
    # Invariant: entries before LSN lo are too old; hi is past the answer.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        entry = _entry_at_or_after(context, mid)
        if entry is None or entry.commit_time.timestamp() >= oldest_time:
            hi = mid
        else:
            lo = mid
    entry = _entry_at_or_after(context, hi)
    if entry is None:
        return FeedPosition.of(hi)  # every entry is too old
    return entry.id


def _entry_at_or_after(context: JobContext, lsn: int) -> FeedEntry | None:
    feed = context.reader
    entries = feed.run(feed.queries.entries_from(FeedPosition.of(lsn), 1))
    return entries[0] if entries else None


def _length_cut(context: JobContext, max_len: int) -> FeedPosition | None:
    """The ID that becomes the first entry when only the newest `max_len` remain."""
    feed = context.reader
    excess = feed.run(feed.queries.length()) - max_len
    if max_len <= 0 or excess <= 0:
        return None
    start = "-"
    while True:
        # Walk past `excess` entries; the next one is the new first.
        batch = feed.run(feed.queries.positions_from(start, min(excess + 1, WALK_BATCH)))
        if not batch:
            return None
        if len(batch) > excess:
            return batch[excess]
        excess -= len(batch)
        start = batch[-1].exclusive


def drop_stale_in(context: JobContext, *, now: float | None = None) -> list[str]:
    """Drop dumps past retention or superseded by a newer complete one, unless being served."""
    now = time.time() if now is None else now
    retention = context.settings.dumps_retention_s
    leased = leased_ids(context.client, context.database)
    by_shape: dict[str, list[Any]] = {}
    for info in context.store.all_dumps():
        by_shape.setdefault(info.header.shape_key, []).append(info)
    dropped = []
    for infos in by_shape.values():
        infos.sort(key=lambda i: i.dump_id, reverse=True)
        for n, info in enumerate(infos):
            superseded = n > 0
            expired = now - info.header.built_at > retention
            if not (superseded or expired) or info.dump_id in leased:
                continue
            # Leased since `leased` was read? The claim checks again, atomically.
            if claim_for_drop(context.client, context.database, info.dump_id):
                context.store.delete(info)
                dropped.append(info.dump_id)
    context.store.sweep_abandoned(context.settings.dumps_build_timeout_s)
    if dropped:
        log.info("dropped %d stale dumps", len(dropped))
    return dropped


def trim_feed() -> dict[str, Any]:
    """RQ job: trim the feed (see `trim_feed_in`)."""
    context = JobContext.from_settings()
    try:
        return trim_feed_in(context).to_json()
    finally:
        context.close()


def drop_stale_dumps() -> list[str]:
    """RQ job: drop stale dumps (see `drop_stale_in`)."""
    context = JobContext.from_settings()
    try:
        return drop_stale_in(context)
    finally:
        context.close()
