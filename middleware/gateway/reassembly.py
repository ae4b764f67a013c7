"""Reassembling routed chunks into whole per-subscription transactions.

(Capture cuts them: `pgsift.middleware.capture.chunker`.)

A big transaction reaches the feed as several chunks; clients must only ever
see whole transactions. `TxAssembler` routes each chunk as it arrives (so only
the events that matched some shape are held, never the raw transaction) and
hands out the per-listener result when the last chunk arrives. At most
`max_changes` changes are held per listener and transaction: past that the
listener's changes are dropped and it gets `refetch` instead.

The listeners of one shape share one result: the wire form of each row is
made once per shape, and each transaction's messages are cut (and encoded)
once for all of them (`RoutedTx.live_messages`).

`TxRouter` is the routing path of the gateway: the feed tailer routes every
entry through one for all live subscriptions, and a subscription's catch-up
routes the entries before the handoff through one of its own. Shapes that read
inner sets go to its `SetRouter` (`set_router`), given the process's
`SetRegistry`; the rest to the `TxAssembler`. A listener added with a
`ClientBinding` also gets every transaction that confirms that client's
mutations (a version of its ledger row, `pgsift.middleware.mutations.confirmed`),
with `confirmed` set — and no changes when none of the shape's rows changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Generic

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway import table_listeners
from pgsift.middleware.gateway.routed import L, Routed, RoutedTx, apply_event
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.middleware.gateway.table_listeners import ListenersByTable
from pgsift.middleware.mutations.confirmed import (
    ClientBinding,
    Confirmed,
    ledger_confirmations,
    touches_ledger,
)
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
        bound: dict[str, dict[L, str]] | None = None,
    ) -> None:
        self._index = index
        # client id -> {listener: the owner the client's ledger row must have}
        self._bound: dict[str, dict[L, str]] = {} if bound is None else bound
        self.max_changes = max_changes
        self._listeners_of = listeners_of
        self._lsn: int | None = None
        self._pending: dict[L, Routed] = {}
        self._by_shape: dict[str, Routed] = {}  # shape key -> its listeners' Routed
        self._confirming: dict[L, Confirmed] = {}
        # The last whole transaction's confirmations, by the listener whose client's
        # mutations it ran (docs/writes.md); read with what `add` returned.
        self.confirmed: dict[L, Confirmed] = {}
        self.routed_changes = 0

    @property
    def in_flight_lsn(self) -> int | None:
        """LSN of a transaction whose first chunks were routed but not its last."""
        return self._lsn

    def reset(self) -> None:
        """Forget a transaction under way: its remaining chunks will not be routed."""
        self._pending, self._by_shape, self._confirming, self._lsn = {}, {}, {}, None

    def add(self, entry: FeedEntry) -> dict[L, Routed] | None:
        if self._lsn != entry.lsn:
            # A new transaction; leftovers of an unfinished one cannot be completed.
            self._pending, self._by_shape, self._confirming = {}, {}, {}
            self._lsn = entry.lsn
        pending = self._pending
        for change in entry.changes:
            # The listeners of one shape get the same event objects: each is applied
            # (and its row put in wire form) once, into the shape's shared Routed.
            applied: set[tuple[int, int]] = set()
            for listener, event in self._index.route(change):
                routed = pending.get(listener)
                if routed is None:
                    routed = pending[listener] = self._routed_of(listener)
                self.routed_changes += 1
                if routed.refetch:
                    continue  # the listener refetches anyway: hold nothing more for it
                once = (id(routed), id(event))
                if once in applied:
                    continue
                applied.add(once)
                apply_event(routed, event, listener.shape)
                if self.max_changes is not None and len(routed.changes) > self.max_changes:
                    routed.changes.clear()
                    routed.refetch = True
        for table in entry.schema_changes:
            for listener in self._listeners_of(table):
                routed = pending.get(listener)
                if routed is None:
                    routed = pending[listener] = self._routed_of(listener)
                routed.refetch = True
                routed.changes.clear()
        if self._bound and touches_ledger(entry):
            self._confirm(entry, pending)
        if not entry.last:
            return None
        self.confirmed = self._confirming
        self._pending, self._by_shape, self._confirming, self._lsn = {}, {}, {}, None
        return pending

    def _confirm(self, entry: FeedEntry, pending: dict[L, Routed]) -> None:
        for client_id, confirmed in ledger_confirmations(entry).items():
            for listener, owner in self._bound.get(client_id, {}).items():
                if owner != confirmed.owner:
                    continue  # someone else's client id: their outcomes are not ours
                if listener not in pending:
                    pending[listener] = self._routed_of(listener)
                # Per listener, not in the shared Routed: the other listeners of the
                # shape belong to other clients.
                self._confirming[listener] = confirmed

    def _routed_of(self, listener: L) -> Routed:
        """The transaction's Routed of `listener`'s shape, shared by its listeners."""
        key = listener.shape.key
        routed = self._by_shape.get(key)
        if routed is None:
            routed = self._by_shape[key] = Routed()
        return routed


class TxRouter(Generic[L]):
    """Listeners by shape; feed entries in, whole per-listener transactions out."""

    def __init__(
        self, max_changes: int | None = None, *, sets: SetRegistry | None = None
    ) -> None:
        self._index: RoutingIndex[L] = RoutingIndex()
        self._by_table: ListenersByTable[L] = {}
        self._bound: dict[str, dict[L, str]] = {}
        self._clients: dict[L, ClientBinding] = {}
        self._assembler: TxAssembler[L] = TxAssembler(
            self._index, lambda table: tuple(self._by_table.get(table, ())), max_changes,
            self._bound,
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

    def add(self, shape: Shape, listener: L, client: ClientBinding | None = None) -> None:
        """Route `shape`'s changes to `listener`, and `client`'s confirmations too."""
        if shape.inner_sets and self.sets is None:
            raise SetError("this router has no inner sets (TxRouter(sets=...))")
        if client is not None:
            self._clients[listener] = client
            self._bound.setdefault(client.client_id, {})[listener] = client.owner
        if shape.inner_sets:
            assert self.sets is not None
            self.sets.add(shape, listener)
            return
        self._index.add(shape, listener)
        table_listeners.add(self._by_table, shape.table, listener)

    def remove(self, shape: Shape, listener: L) -> None:
        client = self._clients.pop(listener, None)
        if client is not None:
            bound = self._bound.get(client.client_id, {})
            bound.pop(listener, None)
            if not bound:
                self._bound.pop(client.client_id, None)
        if shape.inner_sets:
            if self.sets is not None:
                self.sets.remove(shape, listener)
            return
        self._index.remove(shape, listener)
        table_listeners.discard(self._by_table, shape.table, listener)

    def listeners(self) -> set[L]:
        plain = table_listeners.everyone(self._by_table)
        return plain if self.sets is None else plain | self.sets.listeners()

    def listeners_of(self, entry: FeedEntry) -> set[L]:
        """Whoever `entry` may concern (everyone, when it names no table; every reader of
        an inner set, when it names an inner table: the sets may be wrong now; every
        bound client's listener, when it writes the mutation ledger)."""
        tables = {change.table for change in entry.changes} | set(entry.schema_changes)
        if not tables:
            return self.listeners()
        out = table_listeners.of_tables(self._by_table, tables)
        if self._bound and touches_ledger(entry):
            out |= set(self._clients)  # a confirmation of theirs may be in it
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
        # One RoutedTx per shared Routed (per shape): its listeners share it, and so its
        # messages; a listener whose client's mutations the transaction confirms gets
        # its own.
        shared: dict[int, RoutedTx] = {}
        out: dict[L, RoutedTx] = {}
        confirmations = self._assembler.confirmed
        for listener, result in routed.items():
            tx = shared.get(id(result))
            if tx is None:
                tx = shared[id(result)] = RoutedTx(
                    entry.id, entry.lsn, entry.xid, commit_time, tuple(result.changes),
                    result.refetch, tuple(result.moves),
                )
            confirmed = confirmations.get(listener)
            out[listener] = tx if confirmed is None else replace(tx, confirmed=confirmed)
        return out
