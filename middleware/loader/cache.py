"""Recently loaded rows, kept fresh by the change feed.

One logical clock orders two kinds of events: a fetch starting and a change
being observed. A fetch may store a row only when no change to that row (or a
truncate of its table) was observed after the fetch started, and only over an
entry stored by an earlier-started fetch; so once `changed` has returned, no
reader gets a version older than that change, and readers never go back to an
older version than one the cache already served.

Changes invalidate, they do not update: a fetch may have seen a state newer than
the feed has delivered so far, and writing the change's row over it would move
the cache backwards.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
RowKey = tuple[Hashable, ...]
CacheKey = tuple[str, RowKey]


@dataclass(frozen=True, slots=True)
class Cached:
    """A cache hit: the row, or None when the row did not exist."""

    row: Row | None


class RowCache:
    """A bounded LRU of rows by (table, primary key), with the change clock."""

    def __init__(self, *, max_rows: int) -> None:
        self.max_rows = max_rows
        self._clock = 0
        self._rows: OrderedDict[CacheKey, tuple[int, Row | None]] = OrderedDict()
        # When each row / table last changed; only as far back as the oldest running fetch.
        self._changed: OrderedDict[CacheKey, int] = OrderedDict()
        self._truncated: dict[str, int] = {}
        self._forgot_all = 0  # clock of the last `forget_all`
        self._fetches: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, table: str, key: RowKey) -> Cached | None:
        entry = self._rows.get((table, key))
        if entry is None:
            return None
        self._rows.move_to_end((table, key))
        return Cached(entry[1])

    def begin_fetch(self) -> int:
        """Register a fetch about to read Postgres; returns its start stamp."""
        self._clock += 1
        self._fetches[self._clock] += 1
        return self._clock

    def end_fetch(self, started: int) -> None:
        self._fetches[started] -= 1
        if not self._fetches[started]:
            del self._fetches[started]
        oldest = min(self._fetches, default=self._clock + 1)
        while self._changed:
            key, stamp = next(iter(self._changed.items()))
            if stamp >= oldest:
                break
            del self._changed[key]

    def store(self, table: str, key: RowKey, row: Row | None, started: int) -> bool:
        """Keep what a fetch that began at `started` read, unless it may be stale."""
        cache_key = (table, key)
        if (
            self._forgot_all > started
            or self._truncated.get(table, 0) > started
            or self._changed.get(cache_key, 0) > started
        ):
            return False
        current = self._rows.get(cache_key)
        if current is not None and current[0] > started:
            return False
        self._rows[cache_key] = (started, row)
        self._rows.move_to_end(cache_key)
        while len(self._rows) > self.max_rows:
            self._rows.popitem(last=False)
        return True

    def changed(self, table: str, key: RowKey) -> None:
        """A change to this row was observed: forget it, and refuse older fetches."""
        self._clock += 1
        cache_key = (table, key)
        self._rows.pop(cache_key, None)
        if self._fetches:
            self._changed[cache_key] = self._clock
            self._changed.move_to_end(cache_key)

    def forget_all(self) -> None:
        """Changes went unseen (the feed skipped some): forget every row, refuse older fetches."""
        self._clock += 1
        self._forgot_all = self._clock
        self._rows.clear()

    def truncated(self, table: str) -> None:
        """The table was truncated (or its columns changed): forget all its rows."""
        self._clock += 1
        self._truncated[table] = self._clock
        for cache_key in [k for k in self._rows if k[0] == table]:
            del self._rows[cache_key]
