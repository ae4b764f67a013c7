"""The tailer's pass for shapes that read inner sets: sets kept current, rows moved.

Shapes with `x IN (SELECT ...)` (in the query or in its table's policy) are
routed here, not by the plain `TxAssembler`: their verdicts depend on the
process's `SetRegistry`, which this router keeps current from the feed. For
each transaction, in this order (docs/relational.md, "Live semantics"):

1. Chunk by chunk, the changes of inner tables go to `registry.apply`; the
   deltas of one transaction are merged (`SetDelta.then`). Changes of outer
   tables of these shapes are held until the last chunk (at most
   `max_changes`; past that the listeners of those tables refetch), because
   a new row is judged with the sets *after* the whole transaction.
2. At the last chunk: `widen` every delta, route the held outer changes -- the
   first change of a row judges its old image with the sets before the
   transaction (`BeforeView`), later ones with the sets after it; shapes
   that differ only in their inner set get one verdict per group of them
   (`RoutingIndex.route_groups`, applied once per group: `SharedResults`) --
   `narrow`,
   and attach to each listener the `Move`s of the deltas
   (`RoutingIndex.moves`). The session runs them at a snapshot that sees the
   transaction (`gateway/moves.py`).

A set loaded from a snapshot `Q` at the tailer's position `p` is *pending*
(`add_pending`): transactions after `p` that `Q` already saw are not applied
to it again (`registry.apply(skip=...)`). The stamp is forgotten once a
transaction committed `PENDING_S` after the snapshot was taken: every
transaction `Q` saw committed before it.

**The conservative rule.** A session reads a move at a snapshot `Q` taken some
time after `T`; a transaction `Q` sees may take a row out of the region (a
delete, a move to another team) before `Q` reads it, so the move does not
return it, while the client still holds it. So from `T` on, a change whose old
row is in the region of a listener's move is classified as if the listener
held it (`classify(assume_held=True)`: a DELETE, or an INSERT as an upsert)
until that listener's session reports its snapshot (`snapshot_taken`), and
then for the transactions that snapshot saw (by xid; the region is forgotten
once a transaction committed `PENDING_S` after the snapshot was taken). A
transaction it did not see cannot hide a row from the move: the move's image
predates it.

A set that grows past the registry's bound is dropped: the shapes reading it
are unregistered and their listeners refetch (`_evict`).

**Nested sets** (a set that reads another: `lead IN (SELECT user_id FROM
members ...)` inside an inner select): when a set they read changes, the
registry judges the rows of the change's region again, in memory, from the
mirror of their table (`subscriptions/mirror.py`), at that transaction; the
nested set's own delta is exact there and its readers' rows move in and out
as for a first-level set -- no query in the tailer, no refetch. One case is
not exact that way: a nested set pending from a snapshot `Q` that was judged
again at a transaction `Q` did not see, and then meets one `Q` saw (commits
whose visibility order differs from their order in the feed, microseconds
apart). Its rows were judged with images from both sides of `Q`, so it is
dropped (`_stale`) and its subscribers refetch, exact by construction.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway import table_listeners
from pgsift.middleware.gateway.moves import MoveReads
from pgsift.middleware.gateway.routed import Listener, Routed, SharedResults
from pgsift.middleware.gateway.table_listeners import ListenersByTable
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, classify
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.moves import Move
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.set_groups import Reached
from pgsift.subscriptions.sets import BeforeView, SetDelta, SetProvider
from pgsift.subscriptions.shape import Shape

L = TypeVar("L", bound=Listener)

# Seconds after its snapshot was taken when a loaded set's stamp is forgotten: a
# transaction the snapshot saw had committed before it (commit times are
# Postgres's clock, taken times the gateway's: the margin covers a skew).
PENDING_S = 5.0


@dataclass(frozen=True, slots=True)
class _Pending:
    stamp: Snapshot
    taken_at: float  # unix seconds


@dataclass(slots=True)
class _Region:
    """A move sent to a listener whose snapshot may not be taken yet."""

    move: Move
    until: float | None = None  # commit times after this no longer need it
    # The snapshot the move was read in, once taken: only the transactions it saw
    # can have taken a row out of the region unseen.
    stamp: Snapshot | None = None


class SetRouter(Generic[L]):
    """Relational shapes and their listeners; feed entries in, routed transactions out."""

    def __init__(self, registry: SetRegistry, max_changes: int | None = None) -> None:
        self.registry = registry
        self.max_changes = max_changes
        self._index: RoutingIndex[L] = RoutingIndex(sets=registry)
        # The sessions' move reads, shared by shape (`gateway/moves.py`).
        self.reads = MoveReads()
        self._by_table: ListenersByTable[L] = {}
        self._primary_key: dict[str, tuple[str, ...]] = {}
        self._pending: dict[str, _Pending] = {}
        # Per listener, the regions of its moves under way (the conservative rule).
        self._regions: dict[L, list[_Region]] = {}
        self._active: dict[L, list[_Region]] = {}  # those the transaction under way needs
        # Per set, bumped with every delta (a resume's catch-up checks them).
        self._versions: dict[str, int] = {}
        self.routed_changes = 0
        # The transaction under way.
        self._lsn: int | None = None
        self._skip: frozenset[str] = frozenset()
        # Nested sets pending from a snapshot that were judged again at a transaction
        # it did not see (see the module docstring).
        self._stale: set[str] = set()
        self._deltas: dict[str, SetDelta] = {}
        self._outer: list[Change] = []
        self._refetch: set[L] = set()

    @property
    def in_flight_lsn(self) -> int | None:
        return self._lsn

    def add(self, shape: Shape, listener: L) -> None:
        """Register a listener; its shape's sets must be materialized (SetError)."""
        self._index.add(shape, listener)
        table_listeners.add(self._by_table, shape.table, listener)
        self._primary_key[shape.table] = shape.primary_key

    def remove(self, shape: Shape, listener: L) -> None:
        self._index.remove(shape, listener)
        self._regions.pop(listener, None)
        self._active.pop(listener, None)
        if table_listeners.discard(self._by_table, shape.table, listener):
            del self._primary_key[shape.table]

    def add_pending(self, keys: Iterable[str], stamp: Snapshot, taken_at: float) -> None:
        """Sets just loaded from a snapshot: skip the transactions it saw."""
        for key in keys:
            self._pending[key] = _Pending(stamp, taken_at)

    def snapshot_taken(
        self, listener: L, moves: Iterable[Move], stamp: Snapshot, taken_at: float
    ) -> None:
        """`listener`'s session read `moves` in snapshot `stamp`, taken by `taken_at`
        (unix seconds): their regions matter only to the transactions it saw."""
        read = {id(move) for move in moves}
        for region in self._regions.get(listener, ()):
            if id(region.move) in read:
                region.until = taken_at + PENDING_S
                region.stamp = stamp

    def listeners(self) -> set[L]:
        return table_listeners.everyone(self._by_table)

    def listeners_of(self, tables: Iterable[str]) -> set[L]:
        # `table_listeners.of_tables`, inlined: `route` asks this for every chunk.
        return {listener for table in tables for listener in self._by_table.get(table, ())}

    def reset(self) -> None:
        """The tailer passed over entries it did not route: the sets may be stale. Their
        contents are dropped and their shapes unregistered (the caller overflows every
        listener); a subscription attaching from now on loads them again."""
        self._clear()
        for key in self.registry.drop_all():
            for shape, listeners in self._index.evict_set(key):
                for listener in listeners:
                    self._by_table.get(shape.table, set()).discard(listener)
        self._pending.clear()
        self._stale.clear()
        self._regions.clear()
        self._active.clear()

    def _clear(self) -> None:
        """Forget the transaction under way."""
        self._lsn, self._deltas, self._outer, self._refetch = None, {}, [], set()

    def route(self, entry: FeedEntry) -> dict[L, Routed] | None:
        """Route one chunk; at a transaction's last chunk, what it means per listener."""
        if self._lsn != entry.lsn:
            self._begin(entry)
        registry = self.registry
        inner_tables = registry.tables()
        inner = [c for c in entry.changes if c.table in inner_tables]
        if inner:
            for delta in registry.apply(inner, skip=self._skip):
                earlier = self._deltas.get(delta.key)
                self._deltas[delta.key] = delta if earlier is None else earlier.then(delta)
                if delta.key in self._pending and registry.reads(delta.key):
                    self._stale.add(delta.key)
        self._evict()
        for change in entry.changes:
            if change.table in self._by_table:
                self._outer.append(change)
        if self.max_changes is not None and len(self._outer) > self.max_changes:
            self._refetch |= self.listeners_of({c.table for c in self._outer})
            self._outer = [c for c in self._outer if c.table not in self._by_table]
        self._refetch |= self.listeners_of(entry.schema_changes)
        if inner_tables.intersection(entry.schema_changes):
            self._refetch |= self.listeners()  # an inner table changed shape: start over
        if not entry.last:
            return None
        try:
            return self._finish()
        finally:
            self._clear()

    def _begin(self, entry: FeedEntry) -> None:
        self._clear()
        self._lsn = entry.lsn
        committed = entry.commit_time.timestamp()
        for key, pending in list(self._pending.items()):
            if committed > pending.taken_at + PENDING_S or not self.registry.materialized(key):
                del self._pending[key]
        self._skip = frozenset(
            key for key, pending in self._pending.items() if pending.stamp.visible(entry.xid)
        )
        for key in self._stale.intersection(self._skip):
            self.registry.evict(key)  # judged on both sides of its snapshot: start over
        self._stale.intersection_update(self._pending)
        self._active = {}
        for listener, regions in list(self._regions.items()):
            regions[:] = [r for r in regions if r.until is None or committed <= r.until]
            if not regions:
                del self._regions[listener]
                continue
            active = [r for r in regions if r.stamp is None or r.stamp.visible(entry.xid)]
            if active:
                self._active[listener] = active

    def _evict(self) -> None:
        """Sets the registry dropped (past their bound, or `_stale`): their
        shapes are unregistered and their listeners must refetch."""
        registry = self.registry
        while registry.over_bound:
            key = registry.over_bound.pop()
            # Whatever read the set cannot be kept exact without it (listed in turn).
            registry.evict(key)
            self._versions[key] = self._versions.get(key, 0) + 1
            self._deltas.pop(key, None)  # nobody reads it now
            for shape, listeners in self._index.evict_set(key):
                for listener in listeners:
                    self._refetch.add(listener)
                    self._by_table.get(shape.table, set()).discard(listener)
                    # It starts over: its moves' regions no longer matter, and its shape
                    # cannot be judged without the set.
                    self._regions.pop(listener, None)
                    self._active.pop(listener, None)

    def _finish(self) -> dict[L, Routed]:
        deltas = list(self._deltas.values())
        index = self._index
        out: dict[L, Routed] = {listener: Routed(refetch=True) for listener in self._refetch}
        before = BeforeView(self.registry, deltas)
        for delta in deltas:
            index.widen(delta)
        seen: set[Hashable] = set()
        # Events of many listeners are turned into wire form once; a group's verdict
        # (shapes differing only in their inner set) is applied group by group.
        results = SharedResults(out, self.max_changes)
        try:
            for change in self._outer:
                first = self._first_change(change, seen)
                old_sets = before if first else None
                events, reached = index.route_groups(change, before=old_sets)
                if self._active and change.old is not None:
                    events, reached = self._held(change, events, reached, old_sets)
                for listener, event in events:
                    results.add(listener, event)
                for group in reached:
                    results.add_group(group.events, group.listeners())
        finally:
            self.routed_changes += results.routed_changes
            for delta in deltas:
                index.narrow(delta)
        moved: dict[str, set[L]] = {}  # per shape, its listeners with moves
        for delta in deltas:
            for move, listeners in index.moves(delta):
                for listener in listeners:
                    routed = out.get(listener)
                    if routed is None:
                        routed = out[listener] = Routed()
                    routed.moves.append(move)
                    self._regions.setdefault(listener, []).append(_Region(move))
                    moved.setdefault(listener.shape.key, set()).add(listener)
        if self._lsn is not None:
            for shape_key, sessions in moved.items():
                self.reads.expect(self._lsn, shape_key, len(sessions))
        for delta in deltas:
            self._versions[delta.key] = self._versions.get(delta.key, 0) + 1
        return out

    def versions(self, keys: Iterable[str]) -> tuple[int, ...]:
        """How often each set changed (or was dropped) so far."""
        return tuple(self._versions.get(key, 0) for key in keys)

    def _held(
        self,
        change: Change,
        events: list[tuple[L, Event]],
        reached: list[Reached[Any]],
        old_sets: SetProvider | None,
    ) -> tuple[list[tuple[L, Event]], list[Reached[Any]]]:
        """`events` and `reached` with those of listeners whose move's region holds the
        old row classified as if they held it (their snapshot may miss this change);
        a group holding such a listener is applied listener by listener."""
        old = change.old
        assert old is not None
        held = [
            listener
            for listener, regions in self._active.items()
            if listener.shape.table == change.table
            and any(region.move.in_region(old) for region in regions)
        ]
        if not held:
            return events, reached
        keys = {listener.shape.key for listener in held}
        groups = []
        for group in reached:
            if keys.isdisjoint(group.group.entries):
                groups.append(group)
            else:
                expanded = [(each, event) for each in group.listeners() for event in group.events]
                events = events + expanded
        out = [(listener, event) for listener, event in events if listener not in held]
        by_shape: dict[str, tuple[Event, ...]] = {}
        for listener in held:
            shape = listener.shape
            again = by_shape.get(shape.key)
            if again is None:
                prepared = PreparedChange(change, shape.primary_key)
                again = by_shape[shape.key] = classify(
                    shape, prepared, self.registry, old_sets, assume_held=True
                )
            out.extend((listener, event) for event in again)
        return out, groups

    def _first_change(self, change: Change, seen: set[Hashable]) -> bool:
        """Whether `change` is the transaction's first of its row (by old and new key)."""
        primary_key = self._primary_key.get(change.table, ())
        keys = []
        for image in (change.key, change.old, change.new):
            if image is not None and all(c in image for c in primary_key):
                keys.append((change.table, _hashable(tuple(image[c] for c in primary_key))))
        first = not any(key in seen for key in keys)
        seen.update(keys)
        return first


def _hashable(value: tuple[Any, ...]) -> Hashable:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
