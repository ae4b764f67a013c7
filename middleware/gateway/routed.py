"""What one committed transaction means for one subscription: `Routed`, `RoutedTx`.

The values the routing path (`reassembly`, `set_router`) hands to the tailer
and the sessions; `SharedResults` builds them for a transaction whose events
reach groups of subscriptions at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.gateway.messages import (
    SyncMessage,
    WireChange,
    WireOp,
    batched,
    wire_change,
)
from pgsift.middleware.mutations.confirmed import Confirmed
from pgsift.subscriptions.moves import Move
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
    # Rows the transaction's inner-set changes move in or out (`set_router`).
    moves: list[Move] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RoutedTx:
    """A whole committed transaction, as far as one subscription is concerned."""

    id: FeedPosition  # of its last chunk: the cursor that follows it
    lsn: int
    xid: int
    commit_time: float  # unix seconds
    changes: tuple[WireChange, ...]
    refetch: bool
    # Region reads the session runs at a snapshot that sees this transaction.
    moves: tuple[Move, ...] = ()
    # The listener's client's mutations the transaction ran (docs/writes.md).
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
            messages = self._live[max_bytes] = tuple(
                batched(
                    self.changes,
                    max_bytes=max_bytes,
                    cursor=self.id,
                    up_to_date=True,
                    confirmed=self.confirmed,
                )
            )
        return messages


def apply_event(
    routed: Routed,
    event: Any,
    shape: Shape,
    wired: dict[tuple[int, int], tuple[Any, WireChange]] | None = None,
) -> None:
    """Add one routed event to a listener's transaction, in wire form; `wired` (by
    event and wire encoders; it keeps the event alive, so its id is not reused)
    converts an event shared by many listeners once."""
    op = WIRE_OPS.get(event.op)
    if op is None:  # truncate: the client cannot know which of its rows went
        routed.refetch = True
        return
    wire = shape.wire
    memo = (id(event), id(wire))
    known = None if wired is None else wired.get(memo)
    if known is not None:
        routed.changes.append(known[1])
        return
    change = wire_change(op, event.key, None if op == "DELETE" else event.row, wire)
    if wired is not None:
        wired[memo] = (event, change)
    routed.changes.append(change)


class SharedResults(Generic[L]):
    """One transaction's `Routed` per listener, built from events per listener and from
    verdicts per group (`RoutingIndex.route_groups`): a group's events are turned into
    wire form once, and each of its listeners appends those same objects."""

    __slots__ = ("_wired", "max_changes", "out", "routed_changes")

    def __init__(self, out: dict[L, Routed], max_changes: int | None) -> None:
        self.out = out
        self.max_changes = max_changes
        self.routed_changes = 0  # events routed, counted per listener
        # by event and wire encoders (keeps the event alive, so its id is not reused)
        self._wired: dict[tuple[int, int], tuple[Any, WireChange]] = {}

    def _routed(self, listener: L) -> Routed:
        routed = self.out.get(listener)
        if routed is None:
            routed = self.out[listener] = Routed()
        return routed

    def add(self, listener: L, event: Any) -> None:
        """One event for one listener."""
        routed = self._routed(listener)
        self.routed_changes += 1
        if not routed.refetch:
            apply_event(routed, event, listener.shape, self._wired)
            self._bound(routed)

    def add_group(self, events: tuple[Any, ...], listeners: Iterable[L]) -> None:
        """The same events for every listener of a group (their shapes share wire
        encoders when they share a template; converted once per encoder)."""
        converted: dict[int, Routed] = {}  # by id of the wire encoders
        for listener in listeners:
            routed = self._routed(listener)
            self.routed_changes += len(events)
            if routed.refetch:
                continue
            wire = listener.shape.wire
            shared = converted.get(id(wire))
            if shared is None:
                shared = converted[id(wire)] = Routed()
                for event in events:
                    apply_event(shared, event, listener.shape, self._wired)
            if shared.refetch:
                routed.refetch = True
                continue
            routed.changes.extend(shared.changes)
            self._bound(routed)

    def _bound(self, routed: Routed) -> None:
        if self.max_changes is not None and len(routed.changes) > self.max_changes:
            routed.changes.clear()
            routed.refetch = True
