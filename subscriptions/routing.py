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

A shape reading inner sets (`x IN (SELECT ...)`) is judged against the states
of a `SetProvider` given at construction; one whose top-level conjunct is
`col IN (SELECT ...)` is filed under that set (`set_index`), which files the
set's values once for all shapes reading it. The caller tells the index about
every delta of those sets: `widen` before routing the transaction's changes,
`narrow` after (old rows may hold values that left, new rows values that
entered), and asks which shapes a delta moves rows of (`moves`).
Shapes whose whole condition is one `col IN (SELECT ...)` are grouped by
their sets' values (`set_groups`): `route_groups` gives a verdict per group.

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
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pgsift.subscriptions.buckets import bucket_key, choose_term, term_keys
from pgsift.subscriptions.casefold import pg_lower
from pgsift.subscriptions.change import Change, Row
from pgsift.subscriptions.classify import PreparedChange, RoutableShape, classify
from pgsift.subscriptions.events import TRUNCATE, Event
from pgsift.subscriptions.moves import Move, plan_move
from pgsift.subscriptions.patterns import FragmentIndex, choose_pattern
from pgsift.subscriptions.set_groups import MemberGroups, Reached, grouped_set
from pgsift.subscriptions.set_index import SetColumn, choose_set_term
from pgsift.subscriptions.sets import SetDelta, SetError, SetProvider

L = TypeVar("L", bound=Hashable)


class _Entry(Generic[L]):
    """One distinct shape, its listeners and the index term it is filed under."""

    __slots__ = ("grouped", "listeners", "pattern", "set_term", "shape", "term")

    def __init__(self, shape: RoutableShape, term: int) -> None:
        self.shape = shape
        # Index into shape.index_terms; -1 when filed otherwise or on the scan list.
        self.term = term
        # (column, insensitive, gram) when filed in the pattern index.
        self.pattern: tuple[str, bool, str] | None = None
        # (column, inner set key) when filed under an inner set.
        self.set_term: tuple[str, str] | None = None
        # The inner set key when grouped by its values (`set_groups`).
        self.grouped: str | None = None
        self.listeners: dict[L, None] = {}


class _Table(Generic[L]):
    """The shapes of one table."""

    __slots__ = ("buckets", "entries", "groups", "patterns", "primary_key", "scan", "sets")

    def __init__(self, primary_key: tuple[str, ...]) -> None:
        self.primary_key = primary_key
        self.entries: dict[str, _Entry[L]] = {}
        # column -> bucket key -> shape key -> entry
        self.buckets: dict[str, dict[Hashable, dict[str, _Entry[L]]]] = {}
        # column -> shapes filed under inner sets compared with it
        self.sets: dict[str, SetColumn[_Entry[L]]] = {}
        # shapes whose whole condition is `col IN (SELECT ...)`, by the values they hold
        self.groups: MemberGroups[_Entry[L]] = MemberGroups()
        # (column, insensitive) -> entries by a gram of their LIKE / ILIKE pattern
        self.patterns: dict[tuple[str, bool], FragmentIndex[_Entry[L]]] = {}
        self.scan: dict[str, _Entry[L]] = {}


@dataclass(frozen=True, slots=True)
class RoutingStats:
    """How the registered shapes are filed (for metrics and the benchmark)."""

    shapes: int
    listeners: int
    indexed: int  # filed in hash buckets (equality / IN terms)
    set_filed: int  # filed under an inner set (IN (SELECT ...) terms), grouped or not
    patterned: int  # filed in a pattern index (LIKE / ILIKE terms)
    scanned: int  # on a scan list: evaluated for every change of their table
    buckets: int  # hash buckets: values of index terms, and of inner sets filed under
    groups: int = 0  # groups of shapes holding one value of their inner set


class RoutingIndex(Generic[L]):
    """Registered shapes and their listeners, indexed for routing changes."""

    def __init__(self, sets: SetProvider | None = None) -> None:
        self._tables: dict[str, _Table[L]] = {}
        self._sets = sets
        # inner set key -> shape key -> entry, for every shape reading the set
        self._readers: dict[str, dict[str, _Entry[L]]] = {}
        # inner set key -> the set columns it is filed in
        self._filed: dict[str, dict[tuple[str, str], SetColumn[_Entry[L]]]] = {}
        # set key -> deltas widened, not narrowed: groups then mix before and after
        self._widened: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, shape: RoutableShape, listener: L) -> None:
        """Register `listener` for the events of `shape`.

        A shape reading inner sets needs them materialized in the index's
        provider (SetError otherwise).
        """
        for inner in shape.inner_sets:
            if self._sets is None:
                raise SetError("this index has no inner sets: RoutingIndex(sets=...)")
            self._sets.state(inner.key)
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

    def route(self, change: Change, *, before: SetProvider | None = None) -> list[tuple[L, Event]]:
        """The events `change` means for each listener whose shape it touches.

        The events of one listener come in the order to apply them (a key
        change is a delete, then an insert); across listeners the order is
        unspecified. `before`: the inner sets as they were before the change's
        transaction, for its old row (`sets.BeforeView`; the first change of a
        row in the transaction); by default the index's sets judge both rows.
        """
        with self._lock:
            out, reached = self._route(change, before)
            for group in reached:
                for listener in group.listeners():
                    out.extend((listener, event) for event in group.events)
            return out

    def route_groups(
        self, change: Change, *, before: SetProvider | None = None
    ) -> tuple[list[tuple[L, Event]], list[Reached[Any]]]:
        """`route`, with the events of grouped shapes (`set_groups`) one verdict per
        group: every listener of a `Reached` (`listeners()`) gets its `events`.
        Iterate them before the index changes (they are views of its groups)."""
        with self._lock:
            return self._route(change, before)

    def _route(
        self, change: Change, before: SetProvider | None
    ) -> tuple[list[tuple[L, Event]], list[Reached[Any]]]:
        table = self._tables.get(change.table)
        if table is None:
            return [], []
        out: list[tuple[L, Event]] = []
        if change.op == "truncate":
            for entry in table.entries.values():
                out.extend((listener, TRUNCATE) for listener in entry.listeners)
            return out, []
        prepared = PreparedChange(change, table.primary_key)
        # Verdicts per group need the old row, and groups holding the sets' states.
        by_group = not self._widened and (change.op == "insert" or prepared.old_known)
        candidates = self._candidates(table, change, prepared, grouped=not by_group)
        reached = table.groups.reach(prepared, table.primary_key) if by_group else []
        sets, old_sets = self._sets, before or self._sets
        for entry in candidates:
            shape = entry.shape
            if shape.primary_key != table.primary_key:
                events = classify(shape, PreparedChange(change, shape.primary_key), sets, old_sets)
            else:
                events = classify(shape, prepared, sets, old_sets)
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
        return out, reached

    def stats(self) -> RoutingStats:
        """Counts of shapes, listeners and buckets over all tables."""
        with self._lock:
            entries = [e for t in self._tables.values() for e in t.entries.values()]
            return RoutingStats(
                shapes=len(entries),
                listeners=sum(len(e.listeners) for e in entries),
                indexed=sum(e.term >= 0 for e in entries),
                set_filed=sum(e.set_term is not None or e.grouped is not None for e in entries),
                patterned=sum(e.pattern is not None for e in entries),
                scanned=sum(len(t.scan) for t in self._tables.values()),
                buckets=sum(len(b) for t in self._tables.values() for b in t.buckets.values())
                + sum(t.groups.distinct_values(t.sets) for t in self._tables.values()),
                groups=sum(t.groups.groups() for t in self._tables.values()),
            )

    def _candidates(
        self, table: _Table[L], change: Change, prepared: PreparedChange, *, grouped: bool
    ) -> dict[_Entry[L], None]:
        """Shapes the change's rows can match: bucket hits, scan list, `grouped` ones."""
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
        for column, filed in table.sets.items():
            candidates.update(dict.fromkeys(filed.candidates(column, rows)))
        if grouped and table.groups:
            candidates.update(dict.fromkeys(table.groups.entries(rows)))
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

    def widen(self, delta: SetDelta) -> None:
        """File the values that entered inner set `delta.key`: before routing the
        changes of the delta's transaction, whose new rows may hold them."""
        with self._lock:
            for filed in self._filed.get(delta.key, {}).values():
                filed.apply(delta.key, delta.added, ())
            self._widened[delta.key] = self._widened.get(delta.key, 0) + 1
            for table in self._tables.values():
                table.groups.apply(delta.key, delta.added, holds=True)

    def narrow(self, delta: SetDelta) -> None:
        """Unfile the values that left the set: after routing the transaction's
        changes, whose old rows may hold them."""
        with self._lock:
            for filed in self._filed.get(delta.key, {}).values():
                filed.apply(delta.key, (), delta.removed)
            for table in self._tables.values():
                table.groups.apply(delta.key, delta.removed, holds=False)
            left = self._widened.get(delta.key, 0) - 1
            if left > 0:
                self._widened[delta.key] = left
            else:
                self._widened.pop(delta.key, None)

    def moves(self, delta: SetDelta) -> list[tuple[Move, tuple[L, ...]]]:
        """The move `delta` means for each shape reading the set, with its listeners."""
        sets = self._sets
        out: list[tuple[Move, tuple[L, ...]]] = []
        if sets is None:
            return out
        with self._lock:
            for entry in self._readers.get(delta.key, {}).values():
                shape = entry.shape
                move = plan_move(shape, shape.columns, delta, sets)
                if move is not None:
                    out.append((move, tuple(entry.listeners)))
            return out

    def evict_set(self, key: str) -> list[tuple[RoutableShape, tuple[L, ...]]]:
        """Unregister every shape reading inner set `key` (no longer materialized)."""
        with self._lock:
            out = []
            for entry in list(self._readers.get(key, {}).values()):
                out.append((entry.shape, tuple(entry.listeners)))
                table = self._tables[entry.shape.table]
                self._unfile(table, entry)
                if not table.entries:
                    del self._tables[entry.shape.table]
            return out

    def _file(self, table: _Table[L], shape: RoutableShape) -> _Entry[L]:
        term, keys, rank = choose_term(table.buckets, shape.index_terms)
        entry: _Entry[L] = _Entry(shape, term)
        table.entries[shape.key] = entry
        for inner in shape.inner_sets:
            self._readers.setdefault(inner.key, {})[shape.key] = entry
        grouped = None if self._sets is None else grouped_set(shape)
        if grouped is not None and self._sets is not None:
            entry.term, entry.grouped = -1, grouped
            table.groups.file(shape, entry, grouped, self._sets.state(grouped).members)
            return entry
        set_term = choose_set_term(table.sets, shape, self._sets, rank)
        if set_term is not None:
            entry.term, entry.set_term = -1, set_term
            column, set_key = set_term
            filed = table.sets.setdefault(column, SetColumn())
            assert self._sets is not None  # add checked it
            filed.file(set_key, shape.key, entry, self._sets.state(set_key).members)
            self._filed.setdefault(set_key, {})[shape.table, column] = filed
            return entry
        if term < 0:
            entry.pattern = choose_pattern(table.patterns, shape)
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
        for inner in shape.inner_sets:
            readers = self._readers[inner.key]
            readers.pop(shape.key, None)
            if not readers:
                del self._readers[inner.key]
        if entry.grouped is not None:
            table.groups.unfile(shape, entry.grouped)
            return
        if entry.set_term is not None:
            column, set_key = entry.set_term
            filed = table.sets[column]
            filed.unfile(set_key, shape.key)
            if set_key not in filed.by_set:
                columns = self._filed[set_key]
                del columns[shape.table, column]
                if not columns:
                    del self._filed[set_key]
            if not filed:
                del table.sets[column]
            return
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
        for key in term_keys(values):
            bucket = buckets[key]
            del bucket[shape.key]
            if not bucket:
                del buckets[key]
        if not buckets:
            del table.buckets[column]
