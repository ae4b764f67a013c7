"""Rows moving into and out of a live subscription when an inner set changes.

The tailer attaches to a transaction `T` the `Move`s its inner-set deltas mean
for a subscription (`set_router`); the session delivers them so (the splice;
docs/relational.md, "Moves"):

1. **Read.** `LiveRows` (the bootstrap seam) opens a REPEATABLE READ snapshot
   `Q` recorded at `T`'s position, on the session's snapshot pool. `Q` must
   see `T` (its commit record can precede its visibility by microseconds):
   otherwise it is retaken (`MOVE_ATTEMPTS`). Every move's region query runs
   in `Q`: rows in the shape are INSERTs (upserts) of the full selected row;
   flagged region rows outside it are DELETEs of their key.
2. **Splice.** The transactions already routed to the subscription after `T`
   (`Inbox.drain`) that `Q` sees are delivered with `T`, their own moves read
   in the same `Q`; the move's rows come after all of them, and the cursor
   handed out is the last of them. The first transaction `Q` does not see,
   and everything after it, follow as usual: `Q`'s image is older than them.
3. **No row overtaken.** A transaction `Q` saw may still arrive later (its
   feed entry was not routed yet when the inbox was drained). Its events are
   dropped for the keys the move returned in the shape (`Splice`): `Q`'s image
   already holds them, and a later transaction touching the same row commits
   after it (its row lock), so it is not visible to `Q` and follows as usual.
   Splices are forgotten once a transaction committed `SPLICE_S` after `Q`
   was taken.

Region rows that changed between `T` and `Q` were routed with the sets after
`T` (exact for a copy with the move applied), and the move's image at `Q`,
which sees all of them, overwrites them; rows outside every region were never
in doubt. So the copy equals `SELECT` at the cursor handed out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.bootstrap.connections import SnapshotPool
from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery
from pgsift.middleware.gateway.messages import WireChange, wire_change
from pgsift.middleware.gateway.routed import RoutedTx
from pgsift.subscriptions.moves import Move
from pgsift.subscriptions.shape import Shape

MOVE_ATTEMPTS = 200
MOVE_RETRY_S = 0.01
# A splice is forgotten at the first transaction that committed this long after
# its snapshot was taken (see `set_router.PENDING_S`).
SPLICE_S = 5.0


def key_text(key: dict[str, Any]) -> str:
    """A wire key as one hashable value."""
    return json.dumps(key, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Splice:
    """A move delivered from snapshot `stamp`: the keys it returned in the shape."""

    stamp: Snapshot
    taken_at: float
    keys: frozenset[str]


class MoveReader:
    """Reads one subscription's moves at snapshots of its session's pool."""

    def __init__(self, shape: Shape, pool: SnapshotPool) -> None:
        self.shape = shape
        self._pool = pool
        self.splices: list[Splice] = []

    async def open(self, tx: RoutedTx) -> LiveRows | None:
        """A snapshot that sees `tx`, recorded at its position; None when none came."""
        for _ in range(MOVE_ATTEMPTS):
            source = await LiveRows.open(
                self._pool.connection(), tx.id, RowQuery.of_shape(self.shape)
            )
            stamp = source.cursor.snapshot
            if stamp is not None and stamp.visible(tx.xid):
                return source
            await source.close()
            await asyncio.sleep(MOVE_RETRY_S)
        return None

    async def read(self, source: LiveRows, moves: Iterable[Move]) -> list[WireChange]:
        """The moves' rows in `source`'s snapshot, one change per key; the splice recorded."""
        shape = self.shape
        columns = shape.columns
        width = len(columns)
        out: dict[str, WireChange] = {}
        for move in moves:
            async for batch in source.statement(move.sql, move.params):
                for row in batch:
                    values = dict(zip(columns, row[:width], strict=True))
                    key = {c: values[c] for c in shape.primary_key}
                    inside = move.inserts_only or bool(row[width])
                    change = wire_change(
                        "INSERT" if inside else "DELETE", key, values if inside else None,
                        shape.wire,
                    )
                    out[key_text(change.key)] = change
        stamp = source.cursor.snapshot
        assert stamp is not None  # a live source always has one
        inside_keys = frozenset(k for k, c in out.items() if c.op == "INSERT")
        self.splices.append(Splice(stamp, source.read.taken_at, inside_keys))
        return list(out.values())

    def unspliced(self, tx: RoutedTx) -> tuple[WireChange, ...]:
        """`tx`'s changes without those an earlier move's snapshot already holds."""
        self.splices = [s for s in self.splices if tx.commit_time <= s.taken_at + SPLICE_S]
        held = [s.keys for s in self.splices if s.stamp.visible(tx.xid)]
        if not held:
            return tx.changes
        return tuple(c for c in tx.changes if not any(key_text(c.key) in k for k in held))
