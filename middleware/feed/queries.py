"""What pgsift asks Redis about a feed, and how it reads the answers: pure, no I/O.

Every read of the feed is a `FeedQuery`: the commands to send (several go in
one MULTI) and a function from their replies to pgsift's values (`FeedEntry`,
`FeedPosition`, `FeedBounds`). The sync and asyncio readers
(`pgsift.middleware.feed.reader`) are thin shells that send the commands and
hand the replies back, so both speak exactly the same protocol.
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


@dataclass(frozen=True, slots=True)
class FeedQuery(Generic[T]):
    """Commands for Redis (one, or several in a MULTI) and the reading of their replies."""

    commands: tuple[Command, ...]
    parse: Callable[[list[Any]], T]


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
        return FeedQuery((command,), lambda replies: _read_entries(replies[0]))

    def entries_from(self, start: str, count: int) -> FeedQuery[list[FeedEntry]]:
        """Up to `count` entries from `start` on (a position, or its `exclusive` form)."""
        command = ("XRANGE", self.stream, start, "+", "COUNT", count)
        return FeedQuery((command,), lambda replies: _entries(replies[0]))

    def entries_before(self, end: str, count: int) -> FeedQuery[list[FeedEntry]]:
        """Up to `count` entries up to `end` (or before its `exclusive` form), newest first."""
        command = ("XREVRANGE", self.stream, end, "-", "COUNT", count)
        return FeedQuery((command,), lambda replies: _entries(replies[0]))

    def positions_from(self, start: str, count: int) -> FeedQuery[list[FeedPosition]]:
        """The positions of up to `count` entries from `start` on, entries not decoded
        (an entry that cannot be decoded still has its position)."""
        command = ("XRANGE", self.stream, start, "+", "COUNT", count)
        return FeedQuery((command,), lambda replies: _positions(replies[0]))

    def first(self) -> FeedQuery[FeedPosition | None]:
        """The oldest retained entry's position; None for an empty feed."""
        command = ("XRANGE", self.stream, "-", "+", "COUNT", 1)
        return FeedQuery((command,), lambda replies: _first_position(replies[0]))

    def last(self) -> FeedQuery[FeedPosition | None]:
        """The newest entry's position; None for an empty feed."""
        command = ("XREVRANGE", self.stream, "+", "-", "COUNT", 1)
        return FeedQuery((command,), lambda replies: _first_position(replies[0]))

    def length(self) -> FeedQuery[int]:
        return FeedQuery((("XLEN", self.stream),), lambda replies: int(replies[0]))

    def bounds(self) -> FeedQuery[FeedBounds]:
        """The trim marker and the newest entry, read together (MULTI)."""
        commands = (("GET", self.marker), ("XREVRANGE", self.stream, "+", "-", "COUNT", 1))
        return FeedQuery(commands, _bounds)


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


def _bounds(replies: list[Any]) -> FeedBounds:
    marker, items = replies
    return FeedBounds(FeedPosition.optional(marker), _first_position(items))
