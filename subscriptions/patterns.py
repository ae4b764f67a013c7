"""A substring index for `col LIKE / ILIKE pattern` conjuncts, so they need no scan.

A row can only match `title ILIKE '%fix bug%'` if its (lowered) title contains
`fix bug`; so a shape is filed under one short gram (up to three characters)
of a literal run of its pattern, and a value looks up every substring of the
gram lengths in use.
The cost of a lookup grows with the length of the value, not with the number of
shapes; the full predicate still decides on every candidate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Mapping
from functools import lru_cache
from typing import Any, Generic, TypeVar

import sqlglot
from sqlglot import exp

from pgsift.subscriptions.casefold import pg_lower
from pgsift.subscriptions.classify import RoutableShape

E = TypeVar("E", bound=Hashable)

# Grams longer than this add lookups without pruning much more.
GRAM = 3
# Values longer than this are not cut into grams: every shape is a candidate.
MAX_VALUE = 512


def pattern_terms(shape: RoutableShape) -> tuple[tuple[str, str, bool], ...]:
    """(column, pattern, insensitive) of the shape's top-level `col [I]LIKE const` conjuncts."""
    return tuple(
        (column, pattern, insensitive)
        for column, index, insensitive in _pattern_recipe(shape.normalized)
        if isinstance(pattern := shape.params[index], str)
    )


@lru_cache(maxsize=4096)
def _pattern_recipe(normalized: str) -> tuple[tuple[str, int, bool], ...]:
    """(column, parameter index, insensitive) per LIKE conjunct of a normalized statement.

    Shapes that differ only in constants share their normalized text, so this
    parses once per statement structure, not once per shape.
    """
    where = sqlglot.parse_one(normalized, read="postgres").args.get("where")
    if where is None:
        return ()
    recipe = []
    for term in _conjuncts(where.this):
        if isinstance(term, exp.Like | exp.ILike) and isinstance(term.this, exp.Column):
            pattern = term.expression
            if isinstance(pattern, exp.Cast):
                pattern = pattern.this
            if isinstance(pattern, exp.Parameter):
                index = int(pattern.this.this) - 1
                recipe.append((term.this.name, index, isinstance(term, exp.ILike)))
    return tuple(recipe)


def _conjuncts(node: exp.Expression) -> Iterator[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def literal_runs(pattern: str) -> list[str]:
    """The runs of literal characters of a LIKE pattern: every match contains each."""
    runs, run = [], []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                break
            run.append(escaped)
        elif char in "%_":
            runs.append("".join(run))
            run = []
        else:
            run.append(char)
    runs.append("".join(run))
    return [r for r in runs if r]


def pattern_grams(pattern: str, *, insensitive: bool) -> tuple[str, ...]:
    """The grams a shape with this pattern may be filed under (any one will do)."""
    grams: dict[str, None] = {}
    for run in literal_runs(pg_lower(pattern) if insensitive else pattern):
        for i in range(max(1, len(run) - GRAM + 1)):
            grams[run[i : i + GRAM]] = None
    return tuple(grams)


class FragmentIndex(Generic[E]):
    """Entries filed by gram; `candidates(value)` finds those whose gram it contains."""

    __slots__ = ("_by_gram", "_lengths")

    def __init__(self) -> None:
        self._by_gram: dict[str, dict[E, None]] = {}
        self._lengths: Counter[int] = Counter()

    def __bool__(self) -> bool:
        return bool(self._by_gram)

    def load(self, gram: str) -> int:
        """How many entries are filed under `gram`."""
        return len(self._by_gram.get(gram, ()))

    def add(self, gram: str, entry: E) -> None:
        bucket = self._by_gram.setdefault(gram, {})
        if entry not in bucket:
            bucket[entry] = None
            self._lengths[len(gram)] += 1

    def remove(self, gram: str, entry: E) -> None:
        bucket = self._by_gram[gram]
        del bucket[entry]
        if not bucket:
            del self._by_gram[gram]
        self._lengths[len(gram)] -= 1
        if not self._lengths[len(gram)]:
            del self._lengths[len(gram)]

    def candidates(self, value: str) -> Iterator[E]:
        """Entries whose gram occurs in `value` (already lowered for ILIKE)."""
        by_gram = self._by_gram
        if len(value) > MAX_VALUE:
            for bucket in by_gram.values():
                yield from bucket
            return
        for length in self._lengths:
            grams = {value[i : i + length] for i in range(len(value) - length + 1)}
            for gram in grams:
                hit = by_gram.get(gram)
                if hit is not None:
                    yield from hit


def choose_pattern(
    patterns: Mapping[tuple[str, bool], FragmentIndex[Any]], shape: RoutableShape
) -> tuple[str, bool, str] | None:
    """Where to file a shape by a LIKE / ILIKE conjunct, or None for the scan list.

    Longer grams hit fewer values; among equally long ones the least loaded
    spreads shapes with similar patterns (`%x123%`, `%x124%`) over buckets.
    """
    best, best_rank = None, (0, 0)
    for column, pattern, insensitive in pattern_terms(shape):
        fragments = patterns.get((column, insensitive))
        for gram in pattern_grams(pattern, insensitive=insensitive):
            rank = (-len(gram), fragments.load(gram) if fragments is not None else 0)
            if best is None or rank < best_rank:
                best, best_rank = (column, insensitive, gram), rank
    return best
