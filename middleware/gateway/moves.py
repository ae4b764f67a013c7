"""Rows moving into and out of a live subscription when an inner set changes.

The tailer attaches to a transaction `T` the `Move`s its inner-set deltas mean
for a subscription (`set_router`); the session delivers them so (the splice;
docs/relational.md, "Moves"):

1. **Read, once per shape, in one statement.** Every move of `T` for a shape
   is read by one statement on the session's snapshot pool: its region
   queries joined (`UNION ALL`) beside `pg_current_snapshot()`, so the rows
   and the snapshot `Q` they were read in come back together (one statement
   has one snapshot, at any isolation level). `Q` must see `T` (its commit
   record can precede its visibility by microseconds): otherwise the
   statement runs again (`MOVE_ATTEMPTS`). Rows in the shape are INSERTs
   (upserts) of the full selected row; flagged region rows outside it are
   DELETEs of their key. The read, in wire form, is shared by every session
   of the same shape that reaches `T` (`MoveReads`): the same transaction
   routed with the same sets gives them the same moves.
2. **Splice.** The transactions already routed to the subscription after `T`
   (`Inbox.drain`) that `Q` sees are delivered with `T`, before the move's
   rows, up to the first that `Q` does not see or that has moves of its own
   (that one is read next, at a later snapshot); the cursor handed out is the
   last of them.
3. **No row overtaken.** A transaction `Q` saw may still arrive later (its
   feed entry was not routed yet when the inbox was drained, or it had moves
   of its own). Its events are dropped for the keys the move returned in the
   shape (`Splice`): `Q`'s image already holds them, and a later transaction
   touching the same row commits after it (its row lock), so it is not
   visible to `Q` and follows as usual. Splices are forgotten once a
   transaction committed `SPLICE_S` after `Q` was taken.

Region rows that changed between `T` and `Q` were routed with the sets after
`T` (exact for a copy with the move applied), and the move's image at `Q`,
which sees all of them, overwrites them; rows outside every region were never
in doubt. So the copy equals `SELECT` at the cursor handed out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.bootstrap.connections import SnapshotPool
from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.gateway.messages import WireChange
from pgsift.middleware.gateway.routed import RoutedTx
from pgsift.subscriptions.moves import Move
from pgsift.subscriptions.shape import Shape

MOVE_ATTEMPTS = 200
# A snapshot that missed `T` is retaken after 1 ms, then 2, 4, 8, then every 10 ms:
# visibility lags the commit record by microseconds, so a fixed 10 ms sleep only
# added 10 ms to the moves it met.
MOVE_RETRY_FIRST_S = 0.001
MOVE_RETRY_S = 0.01
# A splice is forgotten at the first transaction that committed this long after
# its snapshot was taken (see `set_router.PENDING_S`).
SPLICE_S = 5.0
# A read not taken by every session expected stays shared this long at most; a
# session later than that reads again (a later snapshot, just as exact).
SHARE_S = 30.0


def key_id(key: Mapping[str, Any]) -> Hashable:
    """A wire key as one hashable value (routed changes and moves alike)."""
    try:
        out = tuple(sorted(key.items()))
        hash(out)
    except TypeError:  # arrays (lists) in the key
        return json.dumps(key, sort_keys=True)
    return out


def move_statement(moves: Sequence[Move]) -> tuple[str, list[Any]]:
    """One statement for every move's region: `(snapshot, move, <columns>, in_shape)`
    rows; one row of NULLs beside the snapshot when no region has a row."""
    parts: list[str] = []
    params: list[Any] = []
    for index, move in enumerate(moves):
        flag = ", true" if move.inserts_only else ""
        parts.append(f"SELECT {index}, q.*{flag} FROM ({move.sql}) AS q")
        params.extend(move.params)
    union = " UNION ALL ".join(parts)
    sql = (
        "SELECT s.snap, m.* FROM (SELECT pg_current_snapshot()::text) AS s(snap)"
        f" LEFT JOIN ({union}) AS m ON true"
    )
    return sql, params


@dataclass(frozen=True, slots=True)
class MoveRead:
    """A transaction's moves for one shape, read at snapshot `stamp` (taken before
    `taken_at`, unix seconds): one change per key, and the keys returned in the shape."""

    stamp: Snapshot
    taken_at: float
    changes: tuple[WireChange, ...]
    inside: frozenset[Hashable]


def _changes(shape: Shape, moves: int, rows: list[tuple[Any, ...]]) -> dict[Hashable, WireChange]:
    """The rows of `move_statement` as wire changes, a later move's winning per key."""
    width = len(shape.columns)
    to_wire = shape.wire.values
    primary_key = shape.primary_key
    ordered: list[tuple[Any, ...]]
    if moves == 1:  # in move order already (or the one row of NULLs: no rows)
        ordered = rows if rows[0][1] is not None else []
    else:
        by_move: list[list[tuple[Any, ...]]] = [[] for _ in range(moves)]
        for row in rows:
            if row[1] is not None:
                by_move[row[1]].append(row)
        ordered = [row for move_rows in by_move for row in move_rows]
    # `key_id` without sorting each key's items: the columns are sorted once (the
    # same tuple: a key's column names are distinct); a key of one column (the
    # usual one) without a loop. A 1,000-row move spent more here than in its
    # statement.
    order = tuple(sorted(primary_key))
    single = primary_key[0] if len(primary_key) == 1 else None
    end = 2 + width
    out: dict[Hashable, WireChange] = {}
    for row in ordered:
        values = to_wire(row[2:end])
        ident: Hashable
        if single is not None:
            value = values[single]
            key = {single: value}
            ident = ((single, value),)
        else:
            key = {c: values[c] for c in primary_key}
            ident = tuple([(c, key[c]) for c in order])
        try:
            hash(ident)
        except TypeError:  # arrays (lists) in the key
            ident = key_id(key)
        if row[end]:
            out[ident] = WireChange("INSERT", key, values)
        else:
            out[ident] = WireChange("DELETE", key, None)
    return out


async def read_moves(pool: SnapshotPool, shape: Shape, tx: RoutedTx) -> MoveRead | None:
    """`tx`'s moves for `shape`, read at a snapshot that sees `tx`; None when none came."""
    sql, params = move_statement(tx.moves)
    pause = MOVE_RETRY_FIRST_S
    for _ in range(MOVE_ATTEMPTS):
        async with pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            rows = await cursor.fetchall()
        taken_at = time.time()  # after the statement: no earlier than its snapshot
        stamp = Snapshot.parse(str(rows[0][0]))
        if stamp.visible(tx.xid):
            out = _changes(shape, len(tx.moves), rows)
            inside = frozenset(k for k, c in out.items() if c.op == "INSERT")
            return MoveRead(stamp, taken_at, tuple(out.values()), inside)
        await asyncio.sleep(pause)
        pause = min(pause * 2, MOVE_RETRY_S)
    return None


@dataclass(slots=True)
class _Shared:
    future: asyncio.Future[MoveRead | None]
    since: float  # monotonic
    takers: int = 0


class MoveReads:
    """The process's move reads, by (transaction, shape): the sessions of one shape
    share one statement and its wire form.

    The tailer says how many sessions of a shape got a transaction's moves
    (`expect`); the read is forgotten once that many took it. One that some
    session never takes (it refetched, or went away) is forgotten `SHARE_S`
    later.
    """

    def __init__(self) -> None:
        self._reads: dict[tuple[int, str], _Shared] = {}
        self._expected: dict[tuple[int, str], tuple[int, float]] = {}
        self.started = 0  # reads started: one statement each (plus retries)

    def expect(self, lsn: int, shape_key: str, sessions: int) -> None:
        """`sessions` listeners of the shape got the moves of the transaction at `lsn`
        (the same moves: one transaction, routed with the same sets)."""
        now = time.monotonic()
        self._expected = {k: v for k, v in self._expected.items() if v[1] > now - SHARE_S}
        self._reads = {k: v for k, v in self._reads.items() if v.since > now - SHARE_S}
        self._expected[(lsn, shape_key)] = (sessions, now)

    async def read(self, pool: SnapshotPool, shape: Shape, tx: RoutedTx) -> MoveRead | None:
        """`tx`'s moves for `shape` (exceptions of the read reach every sharer)."""
        key = (tx.lsn, shape.key)
        shared = self._reads.get(key)
        if shared is None:
            self.started += 1
            future = asyncio.ensure_future(read_moves(pool, shape, tx))
            future.add_done_callback(_retrieved)
            shared = self._reads[key] = _Shared(future, time.monotonic())
        shared.takers += 1
        if shared.takers >= self._expected.get(key, (1, 0.0))[0]:
            self._reads.pop(key, None)
            self._expected.pop(key, None)
        # Shielded: a sharer that goes away does not cancel the read for the others.
        return await asyncio.shield(shared.future)


def _retrieved(future: asyncio.Future[MoveRead | None]) -> None:
    """A read whose sharers all went away is no error to log."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class Splice:
    """A move delivered from snapshot `stamp`: the keys it returned in the shape."""

    stamp: Snapshot
    taken_at: float
    keys: frozenset[Hashable]


class MoveReader:
    """One subscription's moves: shared reads, and the splices they leave."""

    def __init__(self, shape: Shape, pool: SnapshotPool, reads: MoveReads) -> None:
        self.shape = shape
        self._pool = pool
        self._reads = reads
        self.splices: list[Splice] = []

    async def read(self, tx: RoutedTx) -> MoveRead | None:
        """`tx`'s moves at a snapshot that sees it; None when none came."""
        return await self._reads.read(self._pool, self.shape, tx)

    def spliced(self, read: MoveRead) -> None:
        """`read`'s rows went out: later transactions it saw must not overtake them."""
        self.splices.append(Splice(read.stamp, read.taken_at, read.inside))

    def unspliced(self, tx: RoutedTx) -> tuple[WireChange, ...]:
        """`tx`'s changes without those an earlier move's snapshot already holds."""
        self.splices = [s for s in self.splices if tx.commit_time <= s.taken_at + SPLICE_S]
        held = [s.keys for s in self.splices if s.stamp.visible(tx.xid)]
        if not held:
            return tx.changes
        return tuple(c for c in tx.changes if not any(key_id(c.key) in k for k in held))
