"""A materialized inner set, kept current from row changes: `MaterializedSet`.

The set holds, for every row of the inner table that is in the select, its
primary key and its value (keyed for comparison, `InnerSet.element`), and
counts each value: a value enters the set when its first row arrives and
leaves with its last, so duplicates are handled and no old row image is
needed (a change names its row's key; REPLICA IDENTITY FULL is not required
of inner tables). One transaction's changes are applied together and give
one net `SetDelta`, which routing and moves act on.

A nested set (one whose select reads other sets) is also judged again when a set
it reads changes (`rejudge`): the rows of its table in the region of the change,
from the registry's in-memory `TableMirror`, so its membership is exact at every
transaction without a query.

Rows are measured as they are held (`approx_bytes`, shallow sizes of keys and
values plus a per-entry overhead), so that the registry (`registry`) can bound
the memory of all sets of a process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from pgsift.subscriptions.change import Change
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.sets import SetDelta, SetProvider

RowKey = tuple[Any, ...]
# A dict slot, the entry's tuples and the count entry, roughly (CPython, 64-bit).
ENTRY_OVERHEAD = 160


def _size(values: tuple[Any, ...]) -> int:
    return sys.getsizeof(values) + sum(sys.getsizeof(v) for v in values)


class MaterializedSet:
    """One inner set's rows as `primary key -> value`, and its values counted."""

    __slots__ = ("_counts", "_partial", "_raw", "_rows", "_tracker", "approx_bytes", "inner",
                 "members", "partial")  # fmt: skip

    def __init__(self, inner: InnerSet) -> None:
        self.inner = inner
        self._rows: dict[RowKey, tuple[Any, ...]] = {}
        # Values without a NULL (scalars for one column, tuples for several) and
        # values with one (tuples), each with how many rows hold it.
        self._counts: dict[Any, int] = {}
        self._partial: dict[tuple[Any, ...], int] = {}
        # The `SetState` views: live views of the counts (read on every evaluation).
        self.members = self._counts.keys()
        self.partial = self._partial.keys()
        # One typed value per member, for binding in SQL.
        self._raw: dict[Any, tuple[Any, ...]] = {}
        self._tracker: _Tracker | None = None
        self.approx_bytes = 0

    # -- SetState ---------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not self._rows

    @property
    def rows(self) -> int:
        """How many inner rows the set holds."""
        return len(self._rows)

    def holds(self, key: RowKey) -> bool:
        """Whether the set holds the row with primary key `key`."""
        return key in self._rows

    def row_keys(self) -> Iterable[RowKey]:
        """The primary keys of the rows the set holds."""
        return self._rows.keys()

    # -- maintenance --------------------------------------------------------------

    def load(self, rows: Iterable[Mapping[str, Any]]) -> SetDelta:
        """Add rows read with `inner.to_sql()` (all in the select); the delta from before."""
        tracker = _Tracker(self)
        inner = self.inner
        for row in rows:
            self._put(tuple(row[c] for c in inner.primary_key), row)
        return tracker.delta()

    def apply(self, changes: Iterable[Change], sets: SetProvider | None = None) -> SetDelta:
        """Apply one transaction's changes of the inner table; its net delta.

        `sets` gives the states of the set's own inner sets (nested selects),
        as they are after the transaction.
        """
        tracker = _Tracker(self)
        inner = self.inner
        for change in changes:
            if change.table != inner.table:
                continue
            if change.op == "truncate":
                for key in list(self._rows):
                    self._drop(key)
                continue
            old_key = old_row_key(change, inner.primary_key)
            if old_key is not None:
                self._drop(old_key)
            new = change.new
            if change.op != "delete" and new is not None and inner.matches(new, sets):
                self._put(tuple(new[c] for c in inner.primary_key), new)
        return tracker.delta()

    def rejudge(
        self,
        region: Iterable[RowKey],
        rows: Mapping[RowKey, Mapping[str, Any]],
        sets: SetProvider,
    ) -> SetDelta:
        """A set this nested set reads changed (`sets`: the states after it): the rows
        of its table in the change's `region` (their current images in `rows`, the
        table's mirror; a key not there was deleted) judged again; this set's net
        delta."""
        tracker = _Tracker(self)
        inner = self.inner
        for key in region:
            row = rows.get(key)
            if row is not None and inner.matches(row, sets):
                self._put(key, row)
            else:
                self._drop(key)
        return tracker.delta()

    def _put(self, key: RowKey, row: Mapping[str, Any]) -> None:
        self._drop(key)
        element = self.inner.element(row)
        self._rows[key] = element
        self.approx_bytes += _size(key) + _size(element) + ENTRY_OVERHEAD
        if None in element:
            self._touch(element, partial=True)
            self._partial[element] = self._partial.get(element, 0) + 1
            return
        member = element[0] if len(element) == 1 else element
        self._touch(member, partial=False)
        count = self._counts.get(member, 0)
        self._counts[member] = count + 1
        if not count:
            self._raw[member] = self.inner.raw(row)

    def _drop(self, key: RowKey) -> None:
        element = self._rows.pop(key, None)
        if element is None:
            return
        self.approx_bytes -= _size(key) + _size(element) + ENTRY_OVERHEAD
        if None in element:
            self._touch(element, partial=True)
            _decrement(self._partial, element)
            return
        member = element[0] if len(element) == 1 else element
        self._touch(member, partial=False)
        if not _decrement(self._counts, member):
            self._raw.pop(member, None)

    def _touch(self, member: Any, *, partial: bool) -> None:
        if self._tracker is not None:
            self._tracker.touch(member, partial)

    def raw(self, member: Any) -> tuple[Any, ...] | None:
        """The typed value of a member (None once it left)."""
        return self._raw.get(member)


def _decrement(counts: dict[Any, int], value: Any) -> int:
    left = counts[value] - 1
    if left:
        counts[value] = left
    else:
        del counts[value]
    return left


def old_row_key(change: Change, primary_key: tuple[str, ...]) -> RowKey | None:
    """The key the row had before the change (None for an insert)."""
    if change.op == "insert":
        return None
    for image in (change.old, change.key):
        if image is not None and all(c in image for c in primary_key):
            return tuple(image[c] for c in primary_key)
    # An update that kept its key: pgoutput sends no old key.
    if change.new is not None:
        return tuple(change.new.get(c) for c in primary_key)
    return None


class _Tracker:
    """What a batch touched: each touched value's membership before it, to give the net
    delta (at a cost in the values touched, not in the size of the set)."""

    def __init__(self, target: MaterializedSet) -> None:
        self.target = target
        self.was_empty = target.empty
        self.members: dict[Any, bool] = {}
        self.partial: dict[tuple[Any, ...], bool] = {}
        # The typed value of each member that may have left, captured while it was held.
        self.raw: dict[Any, tuple[Any, ...]] = {}
        target._tracker = self

    def touch(self, member: Any, partial: bool) -> None:
        target = self.target
        if partial:
            self.partial.setdefault(member, member in target._partial)
        elif member not in self.members:
            self.members[member] = member in target._counts
            held = target._raw.get(member)
            if held is not None:
                self.raw[member] = held

    def delta(self) -> SetDelta:
        target = self.target
        target._tracker = None
        now, now_partial = target._counts, target._partial
        added = frozenset(m for m, was in self.members.items() if not was and m in now)
        removed = frozenset(m for m, was in self.members.items() if was and m not in now)
        return SetDelta(
            key=target.inner.key,
            added=added,
            removed=removed,
            raw_added=tuple(target._raw[m] for m in added),
            raw_removed=tuple(self.raw[m] for m in removed),
            partial_added=frozenset(
                p for p, was in self.partial.items() if not was and p in now_partial
            ),
            partial_removed=frozenset(
                p for p, was in self.partial.items() if was and p not in now_partial
            ),
            was_empty=self.was_empty,
            is_empty=target.empty,
        )
