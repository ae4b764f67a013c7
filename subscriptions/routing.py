"""The routing index: from one change to the events of only the shapes it touches.

Per table, each shape is filed under one of its index terms (a top-level
`col = const` / `col IN (consts)` conjunct, `Shape.index_terms`): a hash bucket
per (column, value). A shape with no such term but a top-level
`col [I]LIKE 'pattern'` is filed in a substring index (`patterns`); the rest
sit on the table's scan list. A change looks up the buckets and substrings of
its own values -- for an UPDATE those of the old and of the new row -- and runs
the full predicate (`classify`) only on those candidates and the scan list. So
the cost of a change grows with the shapes it can touch and the scan list, not
with the shapes registered.

Equal shapes (same `shape.key`) are one entry with many listeners. Listeners
are compared by equality: adding the same (shape, listener) twice registers it
once. `add`, `remove` and `route` hold one lock, so a change is always routed
against one consistent set of shapes; a listener added while a `route` call is
running is registered after it and first sees the next change. Events a `route`
call returned may still be delivered after the listener was removed: the caller
must drop them.

Bucket keys follow Postgres equality (`buckets`); buckets may be coarser than
Postgres, since the full predicate runs on every candidate anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pgsift.subscriptions.buckets import bucket_key
from pgsift.subscriptions.casefold import pg_lower
from pgsift.subscriptions.change import Change, Row
from pgsift.subscriptions.classify import PreparedChange, RoutableShape, classify
from pgsift.subscriptions.events import TRUNCATE, Event
from pgsift.subscriptions.patterns import FragmentIndex, pattern_grams, pattern_terms

L = TypeVar("L", bound=Hashable)


class _Entry(Generic[L]):
    """One distinct shape, its listeners and the index term it is filed under."""

    __slots__ = ("listeners", "pattern", "shape", "term")

    def __init__(self, shape: RoutableShape, term: int) -> None:
        self.shape = shape
        # Index into shape.index_terms; -1 when filed by pattern or on the scan list.
        self.term = term
        # (column, insensitive, gram) when filed in the pattern index.
        self.pattern: tuple[str, bool, str] | None = None
        self.listeners: dict[L, None] = {}


class _Table(Generic[L]):
    """The shapes of one table."""

    __slots__ = ("buckets", "entries", "patterns", "primary_key", "scan")

    def __init__(self, primary_key: tuple[str, ...]) -> None:
        self.primary_key = primary_key
        self.entries: dict[str, _Entry[L]] = {}
        # column -> bucket key -> shape key -> entry
        self.buckets: dict[str, dict[Hashable, dict[str, _Entry[L]]]] = {}
        # (column, insensitive) -> entries by a gram of their LIKE / ILIKE pattern
        self.patterns: dict[tuple[str, bool], FragmentIndex[_Entry[L]]] = {}
        self.scan: dict[str, _Entry[L]] = {}


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """How the registered shapes are filed (for metrics and the benchmark)."""

    shapes: int
    listeners: int
    indexed: int  # filed in hash buckets (equality / IN terms)
    patterned: int  # filed in a pattern index (LIKE / ILIKE terms)
    scanned: int  # on a scan list: evaluated for every change of their table
    buckets: int


def _term_keys(values: Iterable[Any]) -> frozenset[Hashable]:
    # NULL never equals anything, so a NULL in `IN (...)` can be left out.
    return frozenset(bucket_key(v) for v in values if v is not None)


class RoutingIndex(Generic[L]):
    """Registered shapes and their listeners, indexed for routing changes."""

    def __init__(self) -> None:
        self._tables: dict[str, _Table[L]] = {}
        self._lock = threading.Lock()

    def add(self, shape: RoutableShape, listener: L) -> None:
        """Register `listener` for the events of `shape`."""
        with self._lock:
            table = self._tables.get(shape.table)
            if table is None:
                table = self._tables[shape.table] = _Table(shape.primary_key)
            entry = table.entries.get(shape.key)
            if entry is None:
                entry = self._file(table, shape)
            entry.listeners[listener] = None

    def remove(self, shape: RoutableShape, listener: L) -> bool:
        """Unregister `listener` from `shape`; False if it was not registered."""
        with self._lock:
            table = self._tables.get(shape.table)
            entry = None if table is None else table.entries.get(shape.key)
            if table is None or entry is None or listener not in entry.listeners:
                return False
            del entry.listeners[listener]
            if not entry.listeners:
                self._unfile(table, entry)
                if not table.entries:
                    del self._tables[shape.table]
            return True

    def route(self, change: Change) -> list[tuple[L, Event]]:
        """The events `change` means for each listener whose shape it touches.

        The events of one listener come in the order to apply them (a key
        change is a delete, then an insert); across listeners the order is
        unspecified.
        """
        with self._lock:
            table = self._tables.get(change.table)
            if table is None:
                return []
            out: list[tuple[L, Event]] = []
            if change.op == "truncate":
                for entry in table.entries.values():
                    out.extend((listener, TRUNCATE) for listener in entry.listeners)
                return out
            prepared = PreparedChange(change, table.primary_key)
            candidates = self._candidates(table, change, prepared)
            for entry in candidates:
                shape = entry.shape
                if shape.primary_key == table.primary_key:
                    events = classify(shape, prepared)
                else:
                    events = classify(shape, PreparedChange(change, shape.primary_key))
                if events:
                    for listener in entry.listeners:
                        out.extend((listener, event) for event in events)
            if change.op != "insert" and not prepared.old_known:
                # Without the old row any shape of the table may have held it; a
                # shape the new row cannot match (not a candidate) loses it.
                delete = prepared.delete_event()
                for entry in table.entries.values():
                    if entry not in candidates:
                        out.extend((listener, delete) for listener in entry.listeners)
            return out

    def stats(self) -> RoutingStats:
        """Counts of shapes, listeners and buckets over all tables."""
        with self._lock:
            entries = [e for t in self._tables.values() for e in t.entries.values()]
            return RoutingStats(
                shapes=len(entries),
                listeners=sum(len(e.listeners) for e in entries),
                indexed=sum(e.term >= 0 for e in entries),
                patterned=sum(e.pattern is not None for e in entries),
                scanned=sum(len(t.scan) for t in self._tables.values()),
                buckets=sum(len(b) for t in self._tables.values() for b in t.buckets.values()),
            )

    def _candidates(
        self, table: _Table[L], change: Change, prepared: PreparedChange
    ) -> dict[_Entry[L], None]:
        """Shapes the change's rows can match: bucket hits plus the scan list."""
        rows: tuple[Row | None, ...]
        if change.op == "insert" or not prepared.old_known:
            rows = (change.new,)  # a delete without old row looks up nothing
        elif change.op == "delete":
            rows = (change.old,)
        else:
            rows = (change.old, change.new)
        candidates: dict[_Entry[L], None] = {}
        for column, buckets in table.buckets.items():
            seen = None
            for row in rows:
                if row is None:
                    continue
                value = row.get(column)
                if value is None:
                    continue
                try:
                    bucket = buckets.get(bucket_key(value))
                except TypeError:
                    # A value with no key cannot equal any filed term value.
                    continue
                if bucket is not None and bucket is not seen:
                    candidates.update(dict.fromkeys(bucket.values()))
                    seen = bucket
        for (column, insensitive), fragments in table.patterns.items():
            looked_up = None
            for row in rows:
                value = None if row is None else row.get(column)
                if isinstance(value, str) and value != looked_up:
                    text = pg_lower(value) if insensitive else value
                    candidates.update(dict.fromkeys(fragments.candidates(text)))
                    looked_up = value
        candidates.update(dict.fromkeys(table.scan.values()))
        return candidates

    def _file(self, table: _Table[L], shape: RoutableShape) -> _Entry[L]:
        term, keys = self._choose_term(table, shape)
        entry: _Entry[L] = _Entry(shape, term)
        table.entries[shape.key] = entry
        if term < 0:
            entry.pattern = _choose_pattern(table, shape)
            if entry.pattern is None:
                table.scan[shape.key] = entry
            else:
                column, insensitive, gram = entry.pattern
                table.patterns.setdefault((column, insensitive), FragmentIndex()).add(gram, entry)
            return entry
        buckets = table.buckets.setdefault(shape.index_terms[term][0], {})
        for key in keys:
            buckets.setdefault(key, {})[shape.key] = entry
        return entry

    def _unfile(self, table: _Table[L], entry: _Entry[L]) -> None:
        shape = entry.shape
        del table.entries[shape.key]
        if entry.pattern is not None:
            column, insensitive, gram = entry.pattern
            fragments = table.patterns[column, insensitive]
            fragments.remove(gram, entry)
            if not fragments:
                del table.patterns[column, insensitive]
            return
        if entry.term < 0:
            del table.scan[shape.key]
            return
        column, values = shape.index_terms[entry.term]
        buckets = table.buckets[column]
        for key in _term_keys(values):
            bucket = buckets[key]
            del bucket[shape.key]
            if not bucket:
                del buckets[key]
        if not buckets:
            del table.buckets[column]

    @staticmethod
    def _choose_term(table: _Table[L], shape: RoutableShape) -> tuple[int, frozenset[Hashable]]:
        """The most selective index term of `shape`, or -1 if it has none.

        A term is as selective as the fraction of changes that will hit one of
        its buckets. Without data statistics, estimate that by its number of
        values over the number of distinct values the column has among the
        shapes filed so far: `team_id = 7` beats `status IN ('open', 'todo')`
        once several teams are registered. Ties go to fewer values, then to
        the earlier term.
        """
        best, best_keys, best_rank = -1, frozenset[Hashable](), (float("inf"), 0)
        for i, (column, values) in enumerate(shape.index_terms):
            try:
                keys = _term_keys(values)
            except TypeError:
                continue
            filed = table.buckets.get(column, {})
            distinct = len(filed) + sum(1 for key in keys if key not in filed)
            rank = (len(keys) / max(distinct, 1), len(keys))
            if rank < best_rank:
                best, best_keys, best_rank = i, keys, rank
        return best, best_keys


def _choose_pattern(table: _Table[L], shape: RoutableShape) -> tuple[str, bool, str] | None:
    """Where to file a shape by a LIKE / ILIKE conjunct, or None for the scan list.

    Longer grams hit fewer values; among equally long ones the least loaded
    spreads shapes with similar patterns (`%x123%`, `%x124%`) over buckets.
    """
    best, best_rank = None, (0, 0)
    for column, pattern, insensitive in pattern_terms(shape):
        fragments = table.patterns.get((column, insensitive))
        for gram in pattern_grams(pattern, insensitive=insensitive):
            rank = (-len(gram), fragments.load(gram) if fragments is not None else 0)
            if best is None or rank < best_rank:
                best, best_rank = (column, insensitive, gram), rank
    return best
