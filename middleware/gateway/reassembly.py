"""Reassembling routed chunks into whole per-subscription transactions.

(Capture cuts them: `pgsift.middleware.capture.chunker`.)

A big transaction reaches the feed as several chunks; clients must only ever
see whole transactions. `TxAssembler` routes each chunk as it arrives (so only
the events that matched some shape are held, never the raw transaction) and
hands out the per-listener result when the last chunk arrives. At most
`max_changes` changes are held per listener and transaction: past that the
listener's changes are dropped and it gets `refetch` instead.

`TxRouter` is the routing path of the gateway: the feed tailer routes every
entry through one for all live subscriptions, and a subscription's catch-up
routes the entries before the handoff through one of its own. Shapes that read
inner sets go to its `SetRouter` (`set_router`), given the process's
`SetRegistry`; the rest to the `TxAssembler`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.routed import L, Routed, RoutedTx, apply_event
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.sets import SetError
from pgsift.subscriptions.shape import Shape

__all__ = ["Routed", "RoutedTx", "TxAssembler", "TxRouter"]


class TxAssembler(Generic[L]):
    """Routes chunks through `index`; returns per-listener results at the last chunk."""

    def __init__(
        self,
        index: RoutingIndex[L],
        listeners_of: Callable[[str], Iterable[L]],
        max_changes: int | None = None,
    ) -> None:
        self._index = index
        self.max_changes = max_changes
        self._listeners_of = listeners_of
        self._lsn: int | None = None
        self._pending: dict[L, Routed] = {}
        self.routed_changes = 0

    @property
    def in_flight_lsn(self) -> int | None:
        """LSN of a transaction whose first chunks were routed but not its last."""
        return self._lsn

    def reset(self) -> None:
        """Forget a transaction under way: its remaining chunks will not be routed."""
        self._pending, self._lsn = {}, None

    def add(self, entry: FeedEntry) -> dict[L, Routed] | None:
        if self._lsn != entry.lsn:
            # A new transaction; leftovers of an unfinished one cannot be completed.
            self._pending = {}
            self._lsn = entry.lsn
        pending = self._pending
        for change in entry.changes:
            for listener, event in self._index.route(change):
                routed = pending.get(listener)
                if routed is None:
                    routed = pending[listener] = Routed()
                self.routed_changes += 1
                if routed.refetch:
                    continue  # the listener refetches anyway: hold nothing more for it
                apply_event(routed, event, listener.shape)
                if self.max_changes is not None and len(routed.changes) > self.max_changes:
                    routed.changes.clear()
                    routed.refetch = True
        for table in entry.schema_changes:
            for listener in self._listeners_of(table):
                routed = pending.get(listener)
                if routed is None:
                    routed = pending[listener] = Routed()
                routed.refetch = True
                routed.changes.clear()
        if not entry.last:
            return None
        self._pending, self._lsn = {}, None
        return pending


class TxRouter(Generic[L]):
    """Listeners by shape; feed entries in, whole per-listener transactions out."""

    def __init__(
        self, max_changes: int | None = None, *, sets: SetRegistry | None = None
    ) -> None:
        self._index: RoutingIndex[L] = RoutingIndex()
        self._by_table: dict[str, set[L]] = {}
        self._assembler: TxAssembler[L] = TxAssembler(
            self._index, lambda table: tuple(self._by_table.get(table, ())), max_changes
        )
        self.sets: SetRouter[L] | None = (
            None if sets is None else SetRouter(sets, max_changes)
        )

    @property
    def max_changes(self) -> int | None:
        return self._assembler.max_changes

    @property
    def in_flight_lsn(self) -> int | None:
        """LSN of a transaction whose first chunks were routed but not its last."""
        in_flight = self._assembler.in_flight_lsn
        if in_flight is None and self.sets is not None:
            return self.sets.in_flight_lsn
        return in_flight

    @property
    def routed_changes(self) -> int:
        """Changes routed to some listener so far."""
        extra = 0 if self.sets is None else self.sets.routed_changes
        return self._assembler.routed_changes + extra

    def add(self, shape: Shape, listener: L) -> None:
        if shape.inner_sets:
            if self.sets is None:
                raise SetError("this router has no inner sets (TxRouter(sets=...))")
            self.sets.add(shape, listener)
            return
        self._index.add(shape, listener)
        self._by_table.setdefault(shape.table, set()).add(listener)

    def remove(self, shape: Shape, listener: L) -> None:
        if shape.inner_sets:
            if self.sets is not None:
                self.sets.remove(shape, listener)
            return
        self._index.remove(shape, listener)
        listeners = self._by_table.get(shape.table)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._by_table[shape.table]

    def listeners(self) -> set[L]:
        plain = {listener for listeners in self._by_table.values() for listener in listeners}
        return plain if self.sets is None else plain | self.sets.listeners()

    def listeners_of(self, entry: FeedEntry) -> set[L]:
        """Whoever `entry` may concern (everyone, when it names no table; every reader of
        an inner set, when it names an inner table: the sets may be wrong now)."""
        tables = {change.table for change in entry.changes} | set(entry.schema_changes)
        if not tables:
            return self.listeners()
        out = {listener for table in tables for listener in self._by_table.get(table, ())}
        if self.sets is not None:
            if tables & self.sets.registry.tables():
                return out | self.sets.listeners()
            out |= self.sets.listeners_of(tables)
        return out

    def reset(self) -> None:
        """Forget a transaction under way: its remaining chunks will not be routed."""
        self._assembler.reset()
        if self.sets is not None:
            self.sets.reset()

    def route(self, entry: FeedEntry) -> dict[L, RoutedTx] | None:
        """Route one chunk; at a transaction's last chunk, what it means for each listener
        it touched (None before that)."""
        routed = self._assembler.add(entry)
        if self.sets is not None:
            try:
                related = self.sets.route(entry)
            except Exception:
                self.sets.reset()  # half applied: the sets cannot be trusted any more
                raise
            if routed is not None and related is not None:
                routed.update(related)
        if routed is None:
            return None
        commit_time = entry.commit_time.timestamp()
        return {
            listener: RoutedTx(entry.id, entry.lsn, entry.xid, commit_time,
                               tuple(result.changes), result.refetch, tuple(result.moves))
            for listener, result in routed.items()
        }
