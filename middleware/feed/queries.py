"""What pgsift asks Redis about a feed, and how it reads the answers: pure, no I/O.

Every read of the feed is a `FeedQuery`: the one command to send and a
function from its reply to pgsift's values (`FeedEntry`, `FeedPosition`,
`FeedBounds`). The sync and asyncio readers (`pgsift.middleware.feed.reader`)
are thin shells that send the command and hand the reply back, so both speak
exactly the same protocol.

One command, never a MULTI: Redis refuses MULTI once it is past maxmemory,
and the feed must stay readable while Redis is full (capture is then waiting
for room, and the tailer and every new subscription read the bounds). What
must be read atomically from two keys is a read-only script (`BOUNDS_SCRIPT`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.bounds import FeedBounds
from pgsift.middleware.feed.codec import decode_entry
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import START, FeedPosition

T = TypeVar("T")
Command = tuple[Any, ...]

# KEYS: stream, marker. Returns {marker or nil, newest ID or nil}: both read at one
# moment, as a trim moves them together.
BOUNDS_SCRIPT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local newest = false
if #last > 0 then newest = last[1][1] end
return {redis.call('GET', KEYS[2]), newest}
"""


@dataclass(frozen=True, slots=True)
class FeedQuery(Generic[T]):
    """One command for Redis and the reading of its reply."""

    command: Command
    parse: Callable[[Any], T]


class FeedQueries:
    """The queries pgsift makes of one feed stream."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.marker = keys.feed_trimmed_of(stream)

    def read_after(
        self, after: FeedPosition | None, count: int, block_ms: int | None
    ) -> FeedQuery[list[FeedEntry]]:
        """Up to `count` entries after `after`, waiting up to `block_ms` for one (XREAD)."""
        block = () if block_ms is None else ("BLOCK", block_ms)
        command = ("XREAD", "COUNT", count, *block, "STREAMS", self.stream, after or START)
        return FeedQuery(command, _read_entries)

    def entries_from(self, start: str, count: int) -> FeedQuery[list[FeedEntry]]:
        """Up to `count` entries from `start` on (a position, or its `exclusive` form)."""
        command = ("XRANGE", self.stream, start, "+", "COUNT", count)
        return FeedQuery(command, _entries)

    def entries_before(self, end: str, count: int) -> FeedQuery[list[FeedEntry]]:
        """Up to `count` entries up to `end` (or before its `exclusive` form), newest first."""
        command = ("XREVRANGE", self.stream, end, "-", "COUNT", count)
        return FeedQuery(command, _entries)

    def positions_from(self, start: str, count: int) -> FeedQuery[list[FeedPosition]]:
        """The positions of up to `count` entries from `start` on, entries not decoded
        (an entry that cannot be decoded still has its position)."""
        command = ("XRANGE", self.stream, start, "+", "COUNT", count)
        return FeedQuery(command, _positions)

    def first(self) -> FeedQuery[FeedPosition | None]:
        """The oldest retained entry's position; None for an empty feed."""
        command = ("XRANGE", self.stream, "-", "+", "COUNT", 1)
        return FeedQuery(command, _first_position)

    def last(self) -> FeedQuery[FeedPosition | None]:
        """The newest entry's position; None for an empty feed."""
        command = ("XREVRANGE", self.stream, "+", "-", "COUNT", 1)
        return FeedQuery(command, _first_position)

    def length(self) -> FeedQuery[int]:
        return FeedQuery(("XLEN", self.stream), int)

    def bounds(self) -> FeedQuery[FeedBounds]:
        """The trim marker and the newest entry, read together (one script, see above)."""
        return FeedQuery(("EVAL", BOUNDS_SCRIPT, 2, self.stream, self.marker), _bounds)


def _read_entries(reply: Any) -> list[FeedEntry]:
    # XREAD answers [[stream, [(id, fields), ...]]] (RESP2) or {stream: [[...]]} (RESP3).
    if not reply:
        return []
    items = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
    return _entries(items)


def _entries(items: Any) -> list[FeedEntry]:
    return [decode_entry(stream_id, fields) for stream_id, fields in items]


def _positions(items: Any) -> list[FeedPosition]:
    return [FeedPosition.decoded(stream_id) for stream_id, _ in items]


def _first_position(items: Any) -> FeedPosition | None:
    return FeedPosition.decoded(items[0][0]) if items else None


def _bounds(reply: Any) -> FeedBounds:
    marker, newest = reply
    return FeedBounds(FeedPosition.optional(marker), FeedPosition.optional(newest))
