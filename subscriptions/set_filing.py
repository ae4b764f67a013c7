"""Which held inner sets one change of their table can touch: `SetFiling`.

Thousands of sets may read one table (`SELECT team_id FROM memberships WHERE
user_id = $1`, one per user). A change must reach only the sets it touches, so
that its cost grows with the sets it affects, not with those held:

* the sets that hold the row's old key (kept here as the sets put and drop
  rows): exact, and needs no old image;
* the sets the new row can enter: each set is filed under its most selective
  top-level `col = const` / `col IN (...)` term, as shapes are (`terms`), or on
  the table's scan list when it has none.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from pgsift.subscriptions.buckets import bucket_key
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.terms import index_terms, term_recipe

RowKey = tuple[Any, ...]


def _filing_term(inner: InnerSet) -> tuple[str, frozenset[Hashable]] | None:
    """The term with the fewest values (None: none; the scan list)."""
    terms = index_terms(term_recipe(inner.where), inner.params, inner.consts)
    best = None
    for column, values in terms:
        try:
            keys = frozenset(bucket_key(v) for v in values if v is not None)
        except TypeError:
            continue
        if best is None or len(keys) < len(best[1]):
            best = (column, keys)
    return best


class _Table:
    """The sets of one table."""

    __slots__ = ("buckets", "holding", "keys", "primary_key", "scan", "terms")

    def __init__(self, primary_key: tuple[str, ...]) -> None:
        self.primary_key = primary_key
        self.keys: dict[str, None] = {}
        # column -> bucket key -> set keys
        self.buckets: dict[str, dict[Hashable, dict[str, None]]] = {}
        self.scan: dict[str, None] = {}
        self.terms: dict[str, tuple[str, frozenset[Hashable]] | None] = {}
        # row key -> the sets holding that row
        self.holding: dict[RowKey, dict[str, None]] = {}


class SetFiling:
    """Held sets by table, filed for finding the sets a change touches."""

    def __init__(self) -> None:
        self._tables: dict[str, _Table] = {}

    def tables(self) -> Iterable[str]:
        return self._tables.keys()

    def primary_key(self, table: str) -> tuple[str, ...]:
        return self._tables[table].primary_key

    def add(self, inner: InnerSet) -> None:
        table = self._tables.get(inner.table)
        if table is None:
            table = self._tables[inner.table] = _Table(inner.primary_key)
        table.keys[inner.key] = None
        term = table.terms[inner.key] = _filing_term(inner)
        if term is None:
            table.scan[inner.key] = None
            return
        column, keys = term
        buckets = table.buckets.setdefault(column, {})
        for key in keys:
            buckets.setdefault(key, {})[inner.key] = None

    def remove(self, inner: InnerSet) -> None:
        """Unfile a set (its rows must be unrecorded first: `held(..., holds=False)`)."""
        table = self._tables[inner.table]
        del table.keys[inner.key]
        term = table.terms.pop(inner.key)
        if term is None:
            del table.scan[inner.key]
        else:
            column, keys = term
            buckets = table.buckets[column]
            for key in keys:
                del buckets[key][inner.key]
                if not buckets[key]:
                    del buckets[key]
            if not buckets:
                del table.buckets[column]
        if not table.keys:
            del self._tables[inner.table]

    def held(self, table_name: str, set_key: str, row: RowKey, *, holds: bool) -> None:
        """Record whether set `set_key` holds the row with key `row` of its table."""
        table = self._tables.get(table_name)
        if table is None:
            return
        if holds:
            table.holding.setdefault(row, {})[set_key] = None
            return
        sets = table.holding.get(row)
        if sets is not None:
            sets.pop(set_key, None)
            if not sets:
                del table.holding[row]

    def candidates(self, change: Change, old_key: RowKey | None) -> Iterable[str]:
        """The sets `change` may touch: holders of its old row, those its new row may enter."""
        table = self._tables.get(change.table)
        if table is None:
            return ()
        if change.op == "truncate":
            return tuple(table.keys)
        found: dict[str, None] = {}
        if old_key is not None:
            found.update(table.holding.get(old_key, {}))
        new = change.new
        if change.op != "delete" and new is not None:
            for column, buckets in table.buckets.items():
                value = new.get(column)
                if value is None:
                    continue
                try:
                    found.update(buckets.get(bucket_key(value), {}))
                except TypeError:
                    continue
            found.update(table.scan)
        return tuple(found)
