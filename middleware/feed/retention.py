"""Whether a feed position is still usable: the one retention rule of pgsift.

A cursor (a feed position held by a client, a bootstrap's cursor, a dump's
position) can be continued iff no entry after it has been trimmed. The oldest
retained entry cannot tell that: a cursor handed out while the feed was empty
(`0-0`) is older than every entry appended since, yet nothing after it is lost.
So trimming (`pgsift.workers.trim`) records the highest stream ID it ever
removed in a marker key (`keys.feed_trimmed`), atomically with the XTRIM, and
the rule is

    marker <= cursor <= end of the feed     (compared by LSN)

where the end is the newest entry (or the marker, when everything was trimmed).
A cursor past the end comes from another feed (Redis was reset): not usable.

Positions compare by LSN, as the gateway's cursors mean "every transaction up
to and including the one committed at <lsn>"; trimming never splits a
transaction, so the marker always ends a whole one.

    bounds = FeedRetention(client, keys.feed_stream(db)).bounds()
    bounds.retains(cursor)      # the check
    bounds.end                  # the position to record before a snapshot
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.position import START, FeedPosition

# KEYS: stream, marker. ARGV: minid (every entry below it goes).
# Returns the number of entries removed. The last entry to go is read first and
# the marker only ever moves up; Redis compares the IDs itself where it can, and
# `below` compares two "<ms>-<seq>" strings exactly (no Lua floats for LSNs).
TRIM_SCRIPT = """
local function below(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
if ARGV[1] == '0-0' then
  return 0
end
local last = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
if #last == 0 then
  return 0
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local old = redis.call('GET', KEYS[2])
if not old or below(old, last[1][1]) then
  redis.call('SET', KEYS[2], last[1][1])
end
return removed
"""


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


class FeedRetention:
    """Reads the bounds of one feed stream (sync); `trim` is the only way pgsift trims."""

    def __init__(self, client: redis.Redis[bytes], stream: str) -> None:
        self.client = client
        self.stream = stream
        self.marker = keys.feed_trimmed_of(stream)

    @classmethod
    def for_database(cls, client: redis.Redis[bytes], database: str) -> FeedRetention:
        return cls(client, keys.feed_stream(database))

    def bounds(self) -> FeedBounds:
        """The marker and the newest ID, read together (MULTI)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.marker)
            pipe.xrevrange(self.stream, count=1)
            marker, items = pipe.execute()
        return _bounds(marker, items)

    def retains(self, cursor: str) -> bool:
        return self.bounds().retains(cursor)

    def trim(self, minid: FeedPosition) -> int:
        """Remove every entry below `minid` and raise the marker to the last one removed,
        atomically; the number of entries removed."""
        script = self.client.register_script(TRIM_SCRIPT)
        return int(script(keys=[self.stream, self.marker], args=[minid]))


class AsyncFeedRetention:
    """`FeedRetention.bounds` / `retains` for asyncio (redis.asyncio)."""

    def __init__(self, client: redis.asyncio.Redis[bytes], stream: str) -> None:
        self.client = client
        self.stream = stream
        self.marker = keys.feed_trimmed_of(stream)

    @classmethod
    def for_database(
        cls, client: redis.asyncio.Redis[bytes], database: str
    ) -> AsyncFeedRetention:
        return cls(client, keys.feed_stream(database))

    async def bounds(self) -> FeedBounds:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.marker)
            pipe.xrevrange(self.stream, count=1)
            marker, items = await pipe.execute()
        return _bounds(marker, items)

    async def retains(self, cursor: str) -> bool:
        return (await self.bounds()).retains(cursor)


def _bounds(marker: Any, items: Any) -> FeedBounds:
    return FeedBounds(FeedPosition.optional(marker),
                      FeedPosition.decoded(items[0][0]) if items else None)
