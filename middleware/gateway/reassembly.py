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
routes the entries before the handoff through one of its own. A listener added
with a `ClientBinding` also gets every transaction that confirms that client's
mutations (a version of its ledger row, `pgsift.middleware.mutations.confirmed`),
with `confirmed` set — and no changes when none of the shape's rows changed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.gateway.messages import (
    SyncMessage,
    WireChange,
    WireOp,
    batched,
    wire_change,
)
from pgsift.middleware.mutations.confirmed import (
    ClientBinding,
    Confirmed,
    ledger_confirmations,
    touches_ledger,
)
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.shape import Shape


class Listener(Hashable, Protocol):
    """A routing listener: its shape gives the wire form of the rows routed to it."""

    @property
    def shape(self) -> Shape: ...


L = TypeVar("L", bound=Listener)

WIRE_OPS: dict[str, WireOp] = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


@dataclass(slots=True)
class Routed:
    """What one transaction means for one subscription."""

    changes: list[WireChange] = field(default_factory=list)
    # A TRUNCATE or a schema change of the table: the client must refetch.
    refetch: bool = False


@dataclass(frozen=True, slots=True)
class RoutedTx:
    """A whole committed transaction, as far as one subscription is concerned."""

    id: FeedPosition  # of its last chunk: the cursor that follows it
    lsn: int
    xid: int
    commit_time: float  # unix seconds
    changes: tuple[WireChange, ...]
    refetch: bool
    confirmed: Confirmed | None = None
    # Its live messages by size bound, cut once for every subscription it reaches.
    _live: dict[int, tuple[SyncMessage, ...]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def live_messages(self, max_bytes: int) -> tuple[SyncMessage, ...]:
        """Its changes as live messages of at most ~`max_bytes` (`messages.batched`),
        the same objects for every subscriber, so each is encoded once per selection."""
        messages = self._live.get(max_bytes)
        if messages is None:
            messages = self._live[max_bytes] = tuple(batched(
                self.changes, max_bytes=max_bytes, cursor=self.id, up_to_date=True,
                confirmed=self.confirmed,
            ))
        return messages


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
                _apply(routed, event, listener.shape)
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

    def __init__(self, max_changes: int | None = None) -> None:
        self._index: RoutingIndex[L] = RoutingIndex()
        self._by_table: dict[str, set[L]] = {}
        self._bound: dict[str, dict[L, str]] = {}
        self._clients: dict[L, ClientBinding] = {}
        self._assembler: TxAssembler[L] = TxAssembler(
            self._index, lambda table: tuple(self._by_table.get(table, ())), max_changes,
            self._bound,
        )

    @property
    def max_changes(self) -> int | None:
        return self._assembler.max_changes

    @property
    def in_flight_lsn(self) -> int | None:
        """LSN of a transaction whose first chunks were routed but not its last."""
        return self._assembler.in_flight_lsn

    @property
    def routed_changes(self) -> int:
        """Changes routed to some listener so far."""
        return self._assembler.routed_changes

    def add(self, shape: Shape, listener: L, client: ClientBinding | None = None) -> None:
        """Route `shape`'s changes to `listener`, and `client`'s confirmations too."""
        self._index.add(shape, listener)
        self._by_table.setdefault(shape.table, set()).add(listener)
        if client is not None:
            self._clients[listener] = client
            self._bound.setdefault(client.client_id, {})[listener] = client.owner

    def remove(self, shape: Shape, listener: L) -> None:
        client = self._clients.pop(listener, None)
        if client is not None:
            bound = self._bound.get(client.client_id, {})
            bound.pop(listener, None)
            if not bound:
                self._bound.pop(client.client_id, None)
        self._index.remove(shape, listener)
        listeners = self._by_table.get(shape.table)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._by_table[shape.table]

    def listeners(self) -> set[L]:
        return {listener for listeners in self._by_table.values() for listener in listeners}

    def listeners_of(self, entry: FeedEntry) -> set[L]:
        """Whoever `entry` may concern (everyone, when it names no table)."""
        tables = {change.table for change in entry.changes} | set(entry.schema_changes)
        if not tables:
            return self.listeners()
        found = {listener for table in tables for listener in self._by_table.get(table, ())}
        if self._bound and touches_ledger(entry):
            found |= set(self._clients)  # a confirmation of theirs may be in it
        return found

    def reset(self) -> None:
        """Forget a transaction under way: its remaining chunks will not be routed."""
        self._assembler.reset()

    def route(self, entry: FeedEntry) -> dict[L, RoutedTx] | None:
        """Route one chunk; at a transaction's last chunk, what it means for each listener
        it touched (None before that)."""
        routed = self._assembler.add(entry)
        if routed is None:
            return None
        commit_time = entry.commit_time.timestamp()
        # One RoutedTx per shape: its listeners share it, and so its messages; a
        # listener whose client's mutations the transaction confirms gets its own.
        shared: dict[int, RoutedTx] = {}
        out: dict[L, RoutedTx] = {}
        confirmations = self._assembler.confirmed
        for listener, result in routed.items():
            tx = shared.get(id(result))
            if tx is None:
                tx = shared[id(result)] = RoutedTx(
                    entry.id, entry.lsn, entry.xid, commit_time, tuple(result.changes),
                    result.refetch,
                )
            confirmed = confirmations.get(listener)
            out[listener] = tx if confirmed is None else replace(tx, confirmed=confirmed)
        return out


def _apply(routed: Routed, event: Any, shape: Shape) -> None:
    op = WIRE_OPS.get(event.op)
    if op is None:  # truncate: the client cannot know which of its rows went
        routed.refetch = True
        return
    row = None if op == "DELETE" else event.row
    routed.changes.append(wire_change(op, event.key, row, shape.wire))
