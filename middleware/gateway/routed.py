"""What one committed transaction means for one subscription: `Routed`, `RoutedTx`.

The values the routing path (`reassembly`, `set_router`) hands to the tailer
and the sessions.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

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
            messages = self._live[max_bytes] = tuple(batched(
                self.changes, max_bytes=max_bytes, cursor=self.id, up_to_date=True,
                confirmed=self.confirmed,
            ))
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
