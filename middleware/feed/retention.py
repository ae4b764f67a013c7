"""Trimming the feed, and the readers that check a position against its bounds.

`FeedRetention.trim` is the only way pgsift trims (see
`pgsift.middleware.feed.bounds` for the rule the trim marker serves);
`FeedRetention` / `AsyncFeedRetention` are feed readers made from a stream key
that also answer `retains(cursor)`.

    FeedRetention(client, keys.feed_stream(db)).retains(cursor)
"""

from __future__ import annotations

import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.bounds import FeedBounds
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.reader import AsyncFeedReader, FeedReader

__all__ = ["TRIM_SCRIPT", "AsyncFeedRetention", "FeedBounds", "FeedRetention"]

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


class FeedRetention(FeedReader):
    """A sync reader of one feed stream that checks positions and trims."""

    def __init__(self, client: redis.Redis[bytes], stream: str) -> None:
        self._open(client, stream)
        self.marker = keys.feed_trimmed_of(stream)

    @classmethod
    def for_database(cls, client: redis.Redis[bytes], database: str) -> FeedRetention:
        return cls(client, keys.feed_stream(database))

    def retains(self, cursor: str) -> bool:
        return self.bounds().retains(cursor)

    def trim(self, minid: FeedPosition) -> int:
        """Remove every entry below `minid` and raise the marker to the last one removed,
        atomically; the number of entries removed."""
        script = self.client.register_script(TRIM_SCRIPT)
        return int(script(keys=[self.stream, self.marker], args=[minid]))


class AsyncFeedRetention(AsyncFeedReader):
    """`FeedRetention`'s checks for asyncio (redis.asyncio)."""

    def __init__(self, client: redis.asyncio.Redis[bytes], stream: str) -> None:
        self._open(client, stream)

    @classmethod
    def for_database(
        cls, client: redis.asyncio.Redis[bytes], database: str
    ) -> AsyncFeedRetention:
        return cls(client, keys.feed_stream(database))

    async def retains(self, cursor: str) -> bool:
        return (await self.bounds()).retains(cursor)
