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

A nested set (a select that reads other sets) also reads the *mirror* of its
table (`mirror`): held while a nested set of its structure is, loaded with the
sets (`needed_mirrors`, `load_mirror`), fed every change of the table first;
when a set changes, `apply` judges the mirrored rows of the change's region
again for each nested set reading it.

Memory is bounded by `max_bytes` over all sets and mirrors (their
`approx_bytes`): `load` / `load_mirror` refuse one that would pass it, and one
that grows past it while it is held is dropped by `apply`, with the nested sets
reading a dropped mirror (`over_bound` lists the sets). A shape whose set is not
materialized takes the slower path described in docs/relational.md, never a
wrong one: the registry never answers for a set it does not hold (SetError).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.subscriptions.change import Change
from pgsift.subscriptions.inner import InnerSet, walk_sets
from pgsift.subscriptions.materialized import MaterializedSet, RowKey, old_row_key
from pgsift.subscriptions.mirror import TableMirror, mirror_spec
from pgsift.subscriptions.set_filing import SetFiling
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
    rejudged: int  # nested sets' membership changes judged in memory, since start


class SetRegistry:
    """Inner sets by key: holders counted, states materialized within a memory bound."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._inner: dict[str, InnerSet] = {}
        self._holders: dict[str, int] = {}
        self._states: dict[str, MaterializedSet] = {}
        # Held sets filed by inner table; how deep each nests (0: reads no other set);
        # the sets that read each set.
        self._filing = SetFiling()
        self._depth: dict[str, int] = {}
        self._readers: dict[str, dict[str, None]] = {}
        self._bytes = 0
        self.over_bound: list[str] = []
        # Nested sets' membership changes found by judging their rows again.
        self.rejudged = 0
        # The mirrors of the tables nested sets read (`mirror`): the one each nested set
        # reads, how many held sets read each, and those loaded, by table.
        self._mirror_of: dict[str, str] = {}
        self._mirror_holders: dict[str, int] = {}
        self._mirrors: dict[str, TableMirror] = {}
        self._mirrored: dict[str, dict[str, None]] = {}

    # -- SetProvider ------------------------------------------------------------

    def state(self, key: str) -> SetState:
        state = self._states.get(key)
        if state is None:
            raise SetError(f"inner set {key[:12]} is not materialized")
        return state

    def materialized(self, key: str) -> bool:
        """Whether set (or mirror) `key` is loaded."""
        return key in self._states or key in self._mirrors

    # -- holders ------------------------------------------------------------------

    def acquire(self, sets: Iterable[InnerSet]) -> tuple[InnerSet, ...]:
        """Hold `sets` and their dependencies; those not loaded yet, deepest first."""
        needed = []
        for inner in walk_sets(tuple(sets)):
            if inner.key not in self._inner:
                self._inner[inner.key] = inner
                self._filing.add(inner)
                self._depth[inner.key] = 1 + max(
                    (self._depth[d.key] for d in inner.dependencies), default=-1
                )
                for dependency in inner.dependencies:
                    self._readers.setdefault(dependency.key, {})[inner.key] = None
                if inner.dependencies:
                    mirror = self._mirror_of[inner.key] = mirror_spec(inner).key
                    self._mirror_holders[mirror] = self._mirror_holders.get(mirror, 0) + 1
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
            self._drop(inner.key)
            self._filing.remove(inner)
            del self._depth[inner.key]
            for dependency in inner.dependencies:
                readers = self._readers[dependency.key]
                del readers[inner.key]
                if not readers:
                    del self._readers[dependency.key]
            mirror = self._mirror_of.pop(inner.key, None)
            if mirror is not None:
                left = self._mirror_holders[mirror] - 1
                if left:
                    self._mirror_holders[mirror] = left
                else:
                    del self._mirror_holders[mirror]
                    self._drop_mirror(mirror)

    # -- contents -----------------------------------------------------------------

    def load(self, inner: InnerSet, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Materialize a held set from its query's rows; False (not materialized) when it
        would pass the memory bound or its dependencies are not materialized."""
        if inner.key not in self._holders:
            return False
        if any(d.key not in self._states for d in inner.dependencies):
            return False
        if inner.dependencies and self._mirror_of[inner.key] not in self._mirrors:
            return False
        state = MaterializedSet(inner)
        if not self._fills(state, rows):
            return False
        self._drop(inner.key)
        self._states[inner.key] = state
        self._bytes += state.approx_bytes
        for key in state.row_keys():
            self._filing.held(inner.table, inner.key, key, holds=True)
        return True

    def needed_mirrors(self, sets: Iterable[InnerSet]) -> list[TableMirror]:
        """The mirrors `sets` (nested ones) read that are not loaded yet, empty: each to
        fill with the rows of `mirror.sql()` and pass to `load_mirror`."""
        out: dict[str, TableMirror] = {}
        for inner in walk_sets(tuple(sets)):
            if inner.dependencies and self._mirror_of.get(inner.key) not in self._mirrors:
                spec = mirror_spec(inner)
                out.setdefault(spec.key, TableMirror(spec, inner.primary_key))
        return list(out.values())

    def load_mirror(self, mirror: TableMirror, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Hold a mirror filled from a snapshot; False (not held) when nobody reads it
        or it would pass the memory bound."""
        if mirror.key not in self._mirror_holders or not self._fills(mirror, rows):
            return False
        self._drop_mirror(mirror.key)
        self._mirrors[mirror.key] = mirror
        self._mirrored.setdefault(mirror.table, {})[mirror.key] = None
        self._bytes += mirror.approx_bytes
        return True

    def _fills(
        self, target: MaterializedSet | TableMirror, rows: Iterable[Mapping[str, Any]]
    ) -> bool:
        """Load `rows` into `target` row by row; False as soon as it would pass the bound
        (a set of a million rows is refused before it is read whole)."""
        budget = self.max_bytes - self._bytes
        for row in rows:
            target.load((row,))
            if target.approx_bytes > budget:
                return False
        return True

    def _drop_mirror(self, key: str) -> None:
        mirror = self._mirrors.pop(key, None)
        if mirror is None:
            return
        self._bytes -= mirror.approx_bytes
        keys = self._mirrored[mirror.table]
        del keys[key]
        if not keys:
            del self._mirrored[mirror.table]

    def tables(self) -> frozenset[str]:
        """The inner tables of the held sets (whose changes `apply` wants)."""
        return frozenset(self._filing.tables())

    def apply(self, changes: Iterable[Change], *, skip: Collection[str] = ()) -> list[SetDelta]:
        """Apply one transaction's changes; the deltas of the sets that changed, deepest
        first. Sets that pass the bound are dropped and listed in `over_bound`.

        The mirrors take the changes first. A set that changed then makes the nested
        sets reading it judge the rows of its region again (`MaterializedSet.rejudge`,
        from the mirror of their table), after their own table's changes and with
        every set they read as it is after the changes.

        `skip`: sets and mirrors that already hold this transaction (loaded from a
        snapshot that saw it); they are left as they are."""
        changes = list(changes)
        self._apply_mirrors(changes, skip)
        # Each set gets the changes that may touch it (`SetFiling`), in their order.
        touched: dict[str, list[Change]] = {}
        keys: dict[int, RowKey | None] = {}
        # Sets given a change of a row earlier in the batch may hold it by now.
        given: dict[tuple[str, RowKey], dict[str, None]] = {}
        tables = set(self._filing.tables())
        for change in changes:
            if change.table not in tables:
                continue
            primary_key = self._filing.primary_key(change.table)
            keys[id(change)] = old = old_row_key(change, primary_key)
            candidates = dict.fromkeys(self._filing.candidates(change, old))
            if old is not None:
                candidates.update(given.get((change.table, old), {}))
            if change.new is not None:
                new = tuple(change.new.get(c) for c in primary_key)
                given.setdefault((change.table, new), {}).update(candidates)
            for key in candidates:
                touched.setdefault(key, []).append(change)
        deltas = []
        # The deepest (fewest dependencies) first: a set's readers come after it.
        waiting = [(self._depth[key], key) for key in touched]
        heapq.heapify(waiting)
        read: dict[str, list[SetDelta]] = {}  # per nested set, the deltas of sets it reads
        while waiting:
            _, key = heapq.heappop(waiting)
            state = self._states.get(key)
            if state is None or key in skip:
                continue
            mirror = self._mirrors.get(self._mirror_of.get(key, ""))
            if state.inner.dependencies and (
                mirror is None or any(d.key not in self._states for d in state.inner.dependencies)
            ):
                self._drop(key)  # what it reads was dropped: it cannot be kept exact
                self.over_bound.append(key)
                continue
            before = state.approx_bytes
            mine = touched.get(key, [])
            # A truncate empties the set: every row it held is recorded again.
            held = list(state.row_keys()) if any(c.op == "truncate" for c in mine) else []
            delta = state.apply(mine, self)
            for earlier in read.pop(key, ()):
                assert mirror is not None  # a reader of a set is nested
                region = list(mirror.region(state.inner, earlier, self))
                moved = state.rejudge(region, mirror.rows, self)
                held.extend(region)  # recorded below, as the changed rows are
                if moved:
                    self.rejudged += 1
                    delta = delta.then(moved)
            self._bytes += state.approx_bytes - before
            self._record(state, mine, keys, held)
            if self._bytes > self.max_bytes:
                self._drop(key)
                self.over_bound.append(key)
                continue
            if delta:
                deltas.append(delta)
                for reader in self._readers.get(key, ()):
                    if reader not in read and reader not in touched:
                        heapq.heappush(waiting, (self._depth[reader], reader))
                    read.setdefault(reader, []).append(delta)
        return deltas

    def _apply_mirrors(self, changes: list[Change], skip: Collection[str]) -> None:
        """The changes of mirrored tables, to their mirrors; a mirror past the memory
        bound is dropped, with the sets reading it (listed in `over_bound`)."""
        grown: dict[str, None] = {}
        for change in changes:
            for key in self._mirrored.get(change.table, ()):
                if key in skip:
                    continue
                mirror = self._mirrors[key]
                before = mirror.approx_bytes
                mirror.apply(change)
                self._bytes += mirror.approx_bytes - before
                grown[key] = None
        if self._bytes <= self.max_bytes:
            return
        for key in grown:
            self._drop_mirror(key)
            for set_key, read in self._mirror_of.items():
                if read == key and set_key in self._states:
                    self._drop(set_key)
                    self.over_bound.append(set_key)

    def _record(
        self,
        state: MaterializedSet,
        changes: list[Change],
        keys: dict[int, RowKey | None],
        held: Iterable[RowKey],
    ) -> None:
        """Tell the filing which of the changed rows the set holds now."""
        inner = state.inner
        rows = list(held)
        for change in changes:
            old = keys[id(change)]
            if old is not None:
                rows.append(old)
            if change.new is not None:
                rows.append(tuple(change.new.get(c) for c in inner.primary_key))
        for row in rows:
            self._filing.held(inner.table, inner.key, row, holds=state.holds(row))

    def _drop(self, key: str) -> None:
        state = self._states.pop(key, None)
        if state is not None:
            self._bytes -= state.approx_bytes
            for row in state.row_keys():
                self._filing.held(state.inner.table, key, row, holds=False)

    def evict(self, key: str) -> list[str]:
        """Drop set `key`'s contents and those of every set reading it, transitively;
        those dropped are listed in `over_bound`, and every key visited is returned.

        A reader is judged with the sets it reads: without them (or once they changed
        under it, a nested set's membership: see the gateway's `SetRouter`) it cannot be
        kept exact, so it goes too, and its subscribers load it again."""
        out: list[str] = []
        waiting = [key]
        while waiting:
            each = waiting.pop()
            if each in out:
                continue
            out.append(each)
            waiting.extend(self._readers.get(each, ()))
        for each in out:
            if each in self._states:
                self._drop(each)
                self.over_bound.append(each)
        return out

    def drop_all(self) -> list[str]:
        """Forget every set's contents and every mirror (they may be stale: changes went
        by unseen); the holders stay, and `acquire` lists the sets as needing a load
        again (`needed_mirrors`, their mirrors)."""
        keys = list(self._states)
        for key in keys:
            self._drop(key)
        for key in list(self._mirrors):
            self._drop_mirror(key)
        return keys

    def reads(self, key: str) -> tuple[str, ...]:
        """The keys of the sets held set `key` reads directly (none at the first level)."""
        inner = self._inner.get(key)
        return () if inner is None else tuple(d.key for d in inner.dependencies)

    def dependents(self, key: str) -> tuple[InnerSet, ...]:
        """The held sets that read set `key` directly (nested selects)."""
        return tuple(self._inner[reader] for reader in self._readers.get(key, ()))

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
            rejudged=self.rejudged,
        )
