"""Shapes filed under an inner set's values: `col IN (SELECT ...)` routed like `col = ANY(set)`.

A shape whose top-level conjunct is `col IN (SELECT ...)` can only match a row
whose `col` is in the inner set. So, per (table, column), the index keeps two
maps: *value -> inner sets holding it* and *inner set -> shapes filed under
it*. A change looks up its row's value, then the shapes of those sets: a cost
in the shapes it can touch, whatever the number of shapes reading the same set
(they share one entry per value) or of shapes registered.

The values are the set's own (`SetState.members`, keyed for comparison, which
for the columns `terms` accepts is the column's own value domain), filed once
per (table, column, set) when the first shape files under the set, and kept
current by `apply`: a delta moves only the values that entered or left.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from pgsift.subscriptions.buckets import bucket_key
from pgsift.subscriptions.change import Row
from pgsift.subscriptions.classify import RoutableShape
from pgsift.subscriptions.sets import SetProvider

E = TypeVar("E", bound=Hashable)


def _bucket_keys(values: Iterable[object]) -> Iterable[Hashable]:
    for value in values:
        try:
            yield bucket_key(value)
        except TypeError:
            continue  # no key: no row value can equal it


class SetColumn(Generic[E]):
    """The shapes of one (table, column) filed under inner sets."""

    __slots__ = ("by_set", "by_value", "values")

    def __init__(self) -> None:
        # bucket key of a value -> keys of the sets holding it
        self.by_value: dict[Hashable, dict[str, None]] = {}
        # set key -> shape key -> entry
        self.by_set: dict[str, dict[str, E]] = {}
        # set key -> bucket key -> how many of the set's values have it (bucket keys
        # may be coarser than equality: 'a' and 'a ' share one); to unfile without the set
        self.values: dict[str, dict[Hashable, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_set)

    def file(self, set_key: str, shape_key: str, entry: E, members: Iterable[object]) -> None:
        """File a shape under a set; the set's values are filed with its first shape."""
        shapes = self.by_set.get(set_key)
        if shapes is None:
            shapes = self.by_set[set_key] = {}
            self.values[set_key] = {}
            self.apply(set_key, members, ())
        shapes[shape_key] = entry

    def unfile(self, set_key: str, shape_key: str) -> None:
        """Unfile a shape; the set's values go with its last shape."""
        shapes = self.by_set[set_key]
        del shapes[shape_key]
        if not shapes:
            del self.by_set[set_key]
            for key in self.values.pop(set_key):
                self._drop(key, set_key)

    def apply(self, set_key: str, added: Iterable[object], removed: Iterable[object]) -> None:
        """Move the values of a filed set that entered or left it."""
        filed = self.values.get(set_key)
        if filed is None:
            return
        for key in _bucket_keys(added):
            self.by_value.setdefault(key, {})[set_key] = None
            filed[key] = filed.get(key, 0) + 1
        for key in _bucket_keys(removed):
            left = filed.get(key, 0) - 1
            if left > 0:
                filed[key] = left
                continue
            filed.pop(key, None)
            self._drop(key, set_key)

    def _drop(self, key: Hashable, set_key: str) -> None:
        sets = self.by_value.get(key)
        if sets is not None:
            sets.pop(set_key, None)
            if not sets:
                del self.by_value[key]

    def candidates(self, column: str, rows: Iterable[Row | None]) -> Iterable[E]:
        """The entries filed under a set that holds one of the rows' `column` values."""
        seen: set[Hashable] = set()
        for row in rows:
            value = None if row is None else row.get(column)
            if value is None:
                continue
            try:
                key = bucket_key(value)
            except TypeError:
                continue
            if key in seen:
                continue
            seen.add(key)
            for set_key in self.by_value.get(key, ()):
                yield from self.by_set[set_key].values()


def choose_set_term(
    columns: Mapping[str, SetColumn[Any]],
    shape: RoutableShape,
    sets: SetProvider | None,
    rank: tuple[float, int],
) -> tuple[str, str] | None:
    """The set term to file `shape` under, if one beats the best index term's `rank`.

    As for index terms: the set's size over the distinct values filed in its
    column (at least its size), then the size.
    """
    best = None
    if sets is None:
        return None
    for column, set_key in shape.set_terms:
        size = len(sets.state(set_key).members)
        filed = columns.get(column)
        distinct = max(len(filed.by_value) if filed is not None else 0, size, 1)
        candidate = (size / distinct, size)
        if candidate < rank:
            best, rank = (column, set_key), candidate
    return best
