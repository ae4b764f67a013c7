"""What the feed can still replay: `FeedBounds`, the one retention rule of pgsift.

A cursor (a feed position held by a client, a bootstrap's cursor, a dump's
position) can be continued iff no entry after it has been trimmed. The oldest
retained entry cannot tell that: a cursor handed out while the feed was empty
(`0-0`) is older than every entry appended since, yet nothing after it is lost.
So trimming (`pgsift.workers.trim`, through `FeedRetention.trim`) records the
highest stream ID it ever removed in a marker key (`keys.feed_trimmed`),
atomically with the XTRIM, and the rule is

    marker <= cursor <= end of the feed     (compared by LSN)

where the end is the newest entry (or the marker, when everything was trimmed).
A cursor past the end comes from another feed (Redis was reset): not usable.

Positions compare by LSN, as the gateway's cursors mean "every transaction up
to and including the one committed at <lsn>"; trimming never splits a
transaction, so the marker always ends a whole one.

    bounds = reader.bounds()    # FeedReader / AsyncFeedReader / FeedRetention
    bounds.retains(cursor)      # the check
    bounds.end                  # the position to record before a snapshot
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsift.middleware.feed.position import START, FeedPosition


@dataclass(frozen=True, slots=True)
class FeedBounds:
    """What the feed can still replay: everything after `trimmed`, up to `last`."""

    trimmed: FeedPosition | None  # the highest ID trimming ever removed; None: never trimmed
    last: FeedPosition | None  # the newest entry; None: the feed is empty

    def __post_init__(self) -> None:
        for name in ("trimmed", "last"):
            object.__setattr__(self, name, FeedPosition.optional(getattr(self, name)))

    @property
    def end(self) -> FeedPosition:
        """The feed's position now: every committed transaction up to it is in the feed
        or was trimmed. Record it *before* a snapshot; it passes `retains` until a trim."""
        return max((p for p in (self.last, self.trimmed) if p is not None), default=START)

    def retains(self, cursor: str) -> bool:
        """Whether every entry after `cursor` is still in the feed (and `cursor` is of it)."""
        lsn = FeedPosition(cursor).lsn
        floor = self.trimmed.lsn if self.trimmed is not None else 0
        return floor <= lsn <= self.end.lsn
