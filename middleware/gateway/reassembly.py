"""Reassembling routed chunks into whole per-subscription transactions.

(Capture cuts them: `pgsift.middleware.capture.chunker`.)

A big transaction reaches the feed as several chunks; clients must only ever
see whole transactions. `TxAssembler` routes each chunk as it arrives (so only
the events that matched some shape are held, never the raw transaction) and
hands out the per-listener result when the last chunk arrives. At most
`max_changes` changes are held per listener and transaction: past that the
listener's changes are dropped and it gets `refetch` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.gateway.messages import WireChange, WireOp, wire_change
from pgsift.subscriptions.routing import RoutingIndex

L = TypeVar("L", bound=Hashable)

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
                _apply(routed, event)
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


def _apply(routed: Routed, event: Any) -> None:
    op = WIRE_OPS.get(event.op)
    if op is None:  # truncate: the client cannot know which of its rows went
        routed.refetch = True
        return
    routed.changes.append(wire_change(op, event.key, None if op == "DELETE" else event.row))
