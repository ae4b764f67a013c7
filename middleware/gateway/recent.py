"""The feed entries the tailer read last, held decoded for the sessions that start now.

A subscription that starts walks the feed back from its snapshot's position
(up to `replay.HANDOFF_ENTRIES` entries) and catches up to the tailer's
position; read from Redis, that is a thousand entries fetched and decoded
again for every subscription — with 20,000 subscribing at once, most of a
gateway's time and all of its Redis connections. The tailer has just read
and decoded those entries: `RecentEntries` keeps the last of them, so a
session reads them from memory, and an entry is decoded once per gateway.

What it holds is always a contiguous run of the feed: every entry after
`start` up to `end`, in order. When the tailer moves past entries it did not
read (trimmed, undecodable) it starts over (`reset`); a range it does not
cover is answered with None, and the session reads Redis as before. Bounded
by entries and by changes held, the oldest going first.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from itertools import islice

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import START, FeedPosition

MAX_ENTRIES = 2000  # above replay.HANDOFF_ENTRIES: a whole walk back fits
MAX_CHANGES = 200_000

Key = tuple[int, int]


class RecentEntries:
    """A bounded, contiguous run of the feed's newest entries (see the module docstring)."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_changes: int = MAX_CHANGES) -> None:
        self.max_entries, self.max_changes = max_entries, max_changes
        self._entries: deque[FeedEntry] = deque()
        self._keys: deque[Key] = deque()
        self._changes = 0
        self._start: Key | None = None  # None: nothing is known yet
        self._end: Key = (0, 0)
        self._grew = asyncio.Event()

    def reset(self, position: FeedPosition) -> None:
        """Forget everything: what follows is held from after `position` on."""
        self._entries.clear()
        self._keys.clear()
        self._changes = 0
        self._start = self._end = position.key
        self._wake()

    def append(self, entry: FeedEntry) -> None:
        """The entry after the last one (or after the `reset` position)."""
        if self._start is None:
            return
        key = (entry.lsn, entry.chunk)
        if key <= self._end:
            return  # read again after a retry: held already
        self._entries.append(entry)
        self._keys.append(key)
        self._end = key
        self._changes += len(entry.changes)
        while self._entries and (
            len(self._entries) > self.max_entries or self._changes > self.max_changes
        ):
            old = self._entries.popleft()
            self._start = self._keys.popleft()
            self._changes -= len(old.changes)
        self._wake()

    def before(self, upper: FeedPosition, *, inclusive: bool, count: int) -> list[FeedEntry] | None:
        """Up to `count` entries at (or, not `inclusive`, before) `upper`, newest first, as
        `XREVRANGE` would give them; None when that needs entries not held."""
        if self._start is None or upper.key > self._end:
            return None
        index = (bisect.bisect_right if inclusive else bisect.bisect_left)(self._keys, upper.key)
        if index < count and self._start != START.key:
            return None  # older entries than we hold are needed
        low = max(0, index - count)
        return [self._entries[i] for i in range(index - 1, low - 1, -1)]

    def after(self, cursor: FeedPosition | None, count: int) -> list[FeedEntry] | None:
        """Up to `count` entries after `cursor`, oldest first, as `XREAD` would give them
        (without waiting); None when entries right after `cursor` are not held (or
        there are none yet)."""
        key = (cursor or START).key
        if self._start is None or key < self._start or key >= self._end:
            return None
        index = bisect.bisect_right(self._keys, key)
        return list(islice(self._entries, index, index + count))

    async def reach(self, position: FeedPosition, timeout_s: float) -> bool:
        """Wait up to `timeout_s` until entries up to `position` are held; whether they are."""
        key = position.key
        try:
            async with asyncio.timeout(timeout_s):
                while self._start is None or self._end < key:
                    await self._grew.wait()
        except TimeoutError:
            return False
        return True

    def _wake(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()
