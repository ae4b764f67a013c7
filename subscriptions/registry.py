"""The materialized inner sets of one process, shared by key and bounded: `SetRegistry`.

Every shape (and bound policy) that reads an inner set holds it: `acquire`
counts the holders of a set and of everything it depends on and says which of
them still need loading (deepest first); `release` drops the sets nobody
holds. The I/O layer loads a set with one query (`InnerSet.to_sql()`) and
hands the rows to `load`; then, for every transaction of the feed, it passes
the transaction's changes to `apply` *before* routing the transaction's outer
changes, and gets one `SetDelta` per set that changed, deepest sets first (a
nested set's rows are judged with the sets it depends on as they are after the
transaction).

Memory is bounded by `max_bytes` over all sets (`MaterializedSet.approx_bytes`):
`load` refuses a set that would pass it, and a set that grows past it while it
is held is dropped by `apply` (`over_bound` lists it). A shape whose set is not
materialized takes the slower path described in docs/relational.md, never a
wrong one: the registry never answers for a set it does not hold (SetError).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.subscriptions.change import Change
from pgsift.subscriptions.inner import InnerSet, walk_sets
from pgsift.subscriptions.materialized import MaterializedSet
from pgsift.subscriptions.sets import SetDelta, SetError, SetState

# 256 MiB of materialized sets per process unless the settings say otherwise.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RegistryStats:
    """The registry's size, for /metrics and the benchmark."""

    sets: int
    materialized: int
    rows: int
    approx_bytes: int
    max_bytes: int


class SetRegistry:
    """Inner sets by key: holders counted, states materialized within a memory bound."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._inner: dict[str, InnerSet] = {}
        self._holders: dict[str, int] = {}
        self._states: dict[str, MaterializedSet] = {}
        # Held sets by inner table, and how deep each nests (0: reads no other set).
        self._by_table: dict[str, dict[str, None]] = {}
        self._depth: dict[str, int] = {}
        self._bytes = 0
        self.over_bound: list[str] = []

    # -- SetProvider ------------------------------------------------------------

    def state(self, key: str) -> SetState:
        state = self._states.get(key)
        if state is None:
            raise SetError(f"inner set {key[:12]} is not materialized")
        return state

    def materialized(self, key: str) -> bool:
        return key in self._states

    # -- holders ------------------------------------------------------------------

    def acquire(self, sets: Iterable[InnerSet]) -> tuple[InnerSet, ...]:
        """Hold `sets` and their dependencies; those not loaded yet, deepest first."""
        needed = []
        for inner in walk_sets(tuple(sets)):
            if inner.key not in self._inner:
                self._inner[inner.key] = inner
                self._by_table.setdefault(inner.table, {})[inner.key] = None
                self._depth[inner.key] = 1 + max(
                    (self._depth[d.key] for d in inner.dependencies), default=-1
                )
            self._holders[inner.key] = self._holders.get(inner.key, 0) + 1
            if inner.key not in self._states:
                needed.append(inner)
        return tuple(needed)

    def release(self, sets: Iterable[InnerSet]) -> None:
        """Stop holding `sets` and their dependencies; unheld sets are forgotten."""
        for inner in walk_sets(tuple(sets)):
            left = self._holders.get(inner.key, 0) - 1
            if left > 0:
                self._holders[inner.key] = left
                continue
            self._holders.pop(inner.key, None)
            if self._inner.pop(inner.key, None) is None:
                continue
            keys = self._by_table[inner.table]
            del keys[inner.key]
            if not keys:
                del self._by_table[inner.table]
            del self._depth[inner.key]
            self._drop(inner.key)

    # -- contents -----------------------------------------------------------------

    def load(self, inner: InnerSet, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Materialize a held set from its query's rows; False (not materialized) when it
        would pass the memory bound or its dependencies are not materialized."""
        if inner.key not in self._holders:
            return False
        if any(d.key not in self._states for d in inner.dependencies):
            return False
        state = MaterializedSet(inner)
        budget = self.max_bytes - self._bytes
        for row in rows:
            state.load((row,))
            if state.approx_bytes > budget:
                return False
        self._drop(inner.key)
        self._states[inner.key] = state
        self._bytes += state.approx_bytes
        return True

    def apply(self, changes: Iterable[Change]) -> list[SetDelta]:
        """Apply one transaction's changes; the deltas of the sets that changed, deepest
        first. Sets that pass the bound are dropped and listed in `over_bound`."""
        by_table: dict[str, list[Change]] = {}
        for change in changes:
            if change.table in self._by_table:
                by_table.setdefault(change.table, []).append(change)
        # Only the sets of the tables changed, the deepest (fewest dependencies) first.
        keys = sorted(
            (key for table in by_table for key in self._by_table[table]),
            key=self._depth.__getitem__,
        )
        deltas = []
        for key in keys:
            state = self._states.get(key)
            if state is None:
                continue
            if any(d.key not in self._states for d in state.inner.dependencies):
                self._drop(key)  # a set it reads was dropped: it cannot be kept exact
                self.over_bound.append(key)
                continue
            before = state.approx_bytes
            delta = state.apply(by_table[state.inner.table], self)
            self._bytes += state.approx_bytes - before
            if self._bytes > self.max_bytes:
                self._drop(key)
                self.over_bound.append(key)
                continue
            if delta:
                deltas.append(delta)
        return deltas

    def _drop(self, key: str) -> None:
        state = self._states.pop(key, None)
        if state is not None:
            self._bytes -= state.approx_bytes

    def dependents(self, key: str) -> tuple[InnerSet, ...]:
        """The held sets that read set `key` directly (nested selects)."""
        return tuple(
            inner for inner in self._inner.values() if any(d.key == key for d in inner.dependencies)
        )

    @property
    def approx_bytes(self) -> int:
        """The measured size of every materialized set."""
        return self._bytes

    def stats(self) -> RegistryStats:
        return RegistryStats(
            sets=len(self._inner),
            materialized=len(self._states),
            rows=sum(state.rows for state in self._states.values()),
            approx_bytes=self.approx_bytes,
            max_bytes=self.max_bytes,
        )
