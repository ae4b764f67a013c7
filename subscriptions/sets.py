"""What a predicate reads of an inner set when it runs: `SetState`, `SetProvider`, views.

A shape with `x IN (SELECT ...)` does not hold the inner rows: its predicate
reads each inner set's current state from a provider passed at evaluation time
(`Shape.matches(row, sets=...)`), keyed by `InnerSet.key`. The provider of a
gateway is its `SetRegistry` (`registry`); tests build one from Postgres.

A state holds the set's values *keyed for comparison* (`domains`): a scalar per
value for a one-column select, a tuple for several columns. A compiled
predicate reads `(*constants, states)`: the states of the statement's inner
sets, by position, as the last constant (`bind_states`).

`BeforeView` shows the states as they were before some deltas: within one
transaction, an outer row's old image is judged with the sets before the
transaction's inner changes, its new image with the sets after them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pgsift.subscriptions.errors import PgsiftError


class SetError(PgsiftError):
    """An inner set the caller did not provide (not materialized)."""


class SetState(Protocol):
    """An inner set's values at one point of the feed."""

    @property
    def members(self) -> Collection[Any]:
        """Keyed values without a NULL: scalars (one column) or tuples (several)."""

    @property
    def partial(self) -> Collection[tuple[Any, ...]]:
        """Keyed tuples with a NULL component (one column: `(None,)` when NULL is in the set)."""

    @property
    def empty(self) -> bool:
        """No row at all (`x IN` an empty set is false even for a NULL `x`)."""


class SetProvider(Protocol):
    """Inner set states by `InnerSet.key`."""

    def state(self, key: str) -> SetState:
        """The state of set `key`; SetError when it is not materialized."""


class _States:
    """A statement's set states by position, looked up when the predicate reads one."""

    __slots__ = ("_keys", "_state")

    def __init__(self, keys: Sequence[str], sets: SetProvider) -> None:
        self._keys = keys
        self._state = sets.state

    def __getitem__(self, position: int) -> SetState:
        return self._state(self._keys[position])


def bind_states(
    consts: tuple[Any, ...], keys: Sequence[str], sets: SetProvider | None
) -> tuple[Any, ...]:
    """The constants a compiled predicate with inner sets reads: `(*consts, states)`,
    `states[position]` being the state of the set at that position (read lazily: a
    predicate that decides early reads none)."""
    if sets is None:
        raise SetError("this statement reads inner sets (IN (SELECT ...)): pass sets=")
    return (*consts, _States(keys, sets))


@dataclass(frozen=True, slots=True)
class SetDelta:
    """How one inner set changed: values that entered and left, as keyed values.

    `raw_added` / `raw_removed` hold the same values as typed Python values of
    the select's columns (one tuple per value), for binding in SQL (move-ins).
    `was_empty` / `is_empty` and `had_partial` / `has_partial` tell whether the
    set's emptiness and its NULL-holding elements changed.
    """

    key: str
    added: frozenset[Any]
    removed: frozenset[Any]
    raw_added: tuple[tuple[Any, ...], ...]
    raw_removed: tuple[tuple[Any, ...], ...]
    partial_added: frozenset[tuple[Any, ...]] = frozenset()
    partial_removed: frozenset[tuple[Any, ...]] = frozenset()
    was_empty: bool = False
    is_empty: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.partial_added
            or self.partial_removed
            or self.was_empty != self.is_empty
        )

    def then(self, later: SetDelta) -> SetDelta:
        """This delta followed by `later` (of the same set), as one."""
        added = (self.added - later.removed) | (later.added - self.removed)
        removed = (self.removed - later.added) | (later.removed - self.added)
        raw = dict(zip(self.added, self.raw_added, strict=True))
        raw.update(zip(later.added, later.raw_added, strict=True))
        gone = dict(zip(self.removed, self.raw_removed, strict=True))
        gone.update(zip(later.removed, later.raw_removed, strict=True))
        return SetDelta(
            key=self.key,
            added=added,
            removed=removed,
            raw_added=tuple(raw[v] for v in added),
            raw_removed=tuple(gone[v] for v in removed),
            partial_added=(self.partial_added - later.partial_removed)
            | (later.partial_added - self.partial_removed),
            partial_removed=(self.partial_removed - later.partial_added)
            | (later.partial_removed - self.partial_added),
            was_empty=self.was_empty,
            is_empty=later.is_empty,
        )


class _Before:
    """One set's state with a delta undone."""

    __slots__ = ("_delta", "_state")

    def __init__(self, state: SetState, delta: SetDelta) -> None:
        self._state = state
        self._delta = delta

    @property
    def members(self) -> Collection[Any]:
        return _Members(self._state.members, self._delta)

    @property
    def partial(self) -> Collection[tuple[Any, ...]]:
        delta = self._delta
        now = frozenset(self._state.partial)
        return (now - delta.partial_added) | delta.partial_removed

    @property
    def empty(self) -> bool:
        return self._delta.was_empty


class _Members(Collection[Any]):
    """`members` before a delta: current ones minus the added, plus the removed."""

    __slots__ = ("_delta", "_now")

    def __init__(self, now: Collection[Any], delta: SetDelta) -> None:
        self._now = now
        self._delta = delta

    def __contains__(self, value: object) -> bool:
        if value in self._delta.removed:
            return True
        return value in self._now and value not in self._delta.added

    def __iter__(self) -> Iterator[Any]:
        yield from (v for v in self._now if v not in self._delta.added)
        yield from self._delta.removed

    def __len__(self) -> int:
        return len(self._now) - len(self._delta.added) + len(self._delta.removed)


class BeforeView:
    """A provider showing `sets` as they were before `deltas` (one per changed set)."""

    def __init__(self, sets: SetProvider, deltas: Sequence[SetDelta]) -> None:
        self._sets = sets
        self._deltas = {delta.key: delta for delta in deltas}

    def state(self, key: str) -> SetState:
        state = self._sets.state(key)
        delta = self._deltas.get(key)
        return state if delta is None else _Before(state, delta)
