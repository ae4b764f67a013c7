"""One sync subscription: snapshot (or resume from a cursor) → catch-up → live.

Positions are LSNs: a cursor `"<lsn>-<chunk>"` means "every transaction up to
and including the one committed at <lsn> is in the client's copy". The order of
the steps is what makes the copy exact:

1. Without a cursor, record the feed's end *before* the snapshot, then read
   the rows in a REPEATABLE READ transaction together with `pg_current_snapshot()`.
2. Register at the feed tailer; from then on every transaction above the
   tailer's position lands in this subscription's inbox.
3. Catch up from the recorded position to the tailer's position by reading the
   feed directly, then send `upToDate` with a cursor, then go live from the inbox.
4. Until the first transaction the snapshot did not see, skip replayed ones it
   did see (by xid); the feed is in commit order, so after that none are visible.

The subscription ends with one `mustRefetch` message when the client's copy
can no longer be kept exact by changes: a cursor after which entries were
trimmed, or past the feed's end (see `pgsift.middleware.feed.retention`), a
TRUNCATE of the table (the gateway does not know which rows the client holds,
so it does not send DELETEs for them), a schema change of the table, or the
connection's send queue overflowing. A transaction
is delivered whole: its chunks are assembled first (holding only the events
routed to this shape), then sent as one message, or as several of at most
`gateway_max_message_bytes` where only the last carries the cursor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.entry import parse_stream_id
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.dump_source import DumpRows
from pgsift.middleware.gateway.fanout import FeedSource, FeedTailer, SendBudget
from pgsift.middleware.gateway.messages import (
    REFETCH,
    SyncMessage,
    WireChange,
    batched,
    change_size,
    wire_change,
)
from pgsift.middleware.gateway.metrics import GatewayMetrics
from pgsift.middleware.gateway.snapshot import PgSnapshot, shape_snapshot
from pgsift.middleware.gateway.transactions import RoutedTx, TxAssembler
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.shape import Shape
from psycopg_pool import AsyncConnectionPool

CATCH_UP_BATCH = 500
CATCH_UP_BLOCK_MS = 1000

def parse_cursor(cursor: str) -> tuple[str, PgSnapshot | None]:
    """A client's cursor: a feed position, optionally `@<snapshot>`.

    The `@` form is a bootstrap's (`GET /v1/bootstrap`, see
    `pgsift.middleware.dumps.cursor`): the feed position recorded before its
    snapshot, and that snapshot, whose transactions the replay skips.
    GatewayError when it is neither.
    """
    position, at, snapshot = cursor.partition("@")
    try:
        lsn, chunk = parse_stream_id(position)
        stamp = PgSnapshot.parse(snapshot) if at else None
    except ValueError:
        lsn, chunk, stamp = -1, -1, None
    if lsn < 0 or chunk < 0:
        raise GatewayError(f"cursor {cursor!r} is not a feed position (expected '<lsn>-<n>')")
    return position, stamp


class SyncSession:
    """The message stream of one `sync(query, params, cursor)` subscription."""

    def __init__(
        self,
        *,
        shape: Shape,
        cursor: str | None,
        reader: FeedSource,
        retention: AsyncFeedRetention,
        tailer: FeedTailer,
        pool: AsyncConnectionPool[Any],
        budget: SendBudget,
        max_message_bytes: int,
        metrics: GatewayMetrics | None = None,
        dump: DumpRows | None = None,
    ) -> None:
        self.shape = shape
        self._dump = dump
        # Set by the snapshot (or a bootstrap's cursor); cleared at the first
        # transaction it did not include.
        self._stamp: PgSnapshot | None = None
        self._cursor: str | None = None
        if cursor is not None:
            self._cursor, self._stamp = parse_cursor(cursor)
        self._reader = reader
        self._retention = retention
        self._tailer = tailer
        self._pool = pool
        self._budget = budget
        self._max_bytes = max_message_bytes
        self._metrics = metrics

    async def messages(self) -> AsyncIterator[SyncMessage]:
        if self._cursor is None and self._dump is not None:
            async for message in self._inserts(self._dump_changes(self._dump)):
                yield message
            position, self._stamp = self._dump.position, self._dump.stamp
            retained = await self._retained(position)
        elif self._cursor is None:
            position = (await self._retention.bounds()).end
            async for message in self._snapshot():
                yield message
            # A long snapshot may have outlived the feed's retention.
            retained = await self._retained(position)
        else:
            position = self._cursor
            retained = await self._retained(position)
        if not retained:
            yield REFETCH
            return
        done = parse_stream_id(position)[0]
        inbox = self._tailer.subscribe(self.shape, self._budget)
        try:
            async for tx in self._catch_up(position, done, inbox.after_lsn):
                if tx.refetch:
                    yield REFETCH
                    return
                position, done = tx.id, tx.lsn
                if not tx.changes:
                    continue
                for message in batched(
                    tx.changes, max_bytes=self._max_bytes, cursor=tx.id, up_to_date=False
                ):
                    yield message
            if inbox.after_lsn > done:
                position, done = f"{inbox.after_lsn}-0", inbox.after_lsn
            yield SyncMessage((), position, up_to_date=True)
            while True:
                live = await inbox.get()
                if live is None:
                    yield REFETCH
                    return
                if live.lsn <= done or self._seen_by_snapshot(live.xid):
                    continue
                done = live.lsn
                if live.refetch:
                    yield REFETCH
                    return
                for message in batched(
                    live.changes, max_bytes=self._max_bytes, cursor=live.id, up_to_date=True
                ):
                    yield message
        finally:
            self._tailer.unsubscribe(inbox)

    async def _snapshot(self) -> AsyncIterator[SyncMessage]:
        async with shape_snapshot(self._pool, self.shape) as (stamp, rows):
            self._stamp = stamp
            async for message in self._inserts(self._row_changes(rows)):
                yield message
        if self._metrics:
            self._metrics.snapshots.inc()

    async def _row_changes(self, rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[WireChange]:
        key_columns = self.shape.primary_key
        async for row in rows:
            yield wire_change("INSERT", {k: row[k] for k in key_columns}, row)

    async def _dump_changes(self, dump: DumpRows) -> AsyncIterator[WireChange]:
        key_columns = self.shape.primary_key
        async for row in dump.rows():  # already in JSON form
            yield WireChange("INSERT", {k: row[k] for k in key_columns}, row)

    async def _inserts(self, changes: AsyncIterator[WireChange]) -> AsyncIterator[SyncMessage]:
        """Snapshot rows as INSERT messages of at most ~max_message_bytes."""
        batch: list[WireChange] = []
        size = 0
        async for change in changes:
            size += change_size(change)
            batch.append(change)
            if size >= self._max_bytes:
                yield SyncMessage(tuple(batch), None, up_to_date=False)
                batch, size = [], 0
        if batch:
            yield SyncMessage(tuple(batch), None, up_to_date=False)

    async def _retained(self, cursor: str) -> bool:
        """Whether the feed still holds everything after `cursor` (see feed.retention)."""
        return await self._retention.retains(cursor)

    async def _catch_up(self, cursor: str, done: int, through: int) -> AsyncIterator[RoutedTx]:
        """Every whole transaction in (done, through], read from the feed; without changes
        when it does not touch the shape or the snapshot already holds it."""
        if done >= through:
            return
        index: RoutingIndex[SyncSession] = RoutingIndex()
        index.add(self.shape, self)
        table = self.shape.table
        assembler: TxAssembler[SyncSession] = TxAssembler(
            index, lambda name: (self,) if name == table else ()
        )
        while done < through:
            entries = await self._reader.read_after(cursor, CATCH_UP_BATCH, CATCH_UP_BLOCK_MS)
            for entry in entries:
                if entry.lsn > through:
                    return
                cursor = entry.id
                if entry.lsn <= done:
                    continue
                routed = assembler.add(entry)
                if routed is None:
                    continue
                done = entry.lsn
                result = routed.get(self)
                if self._seen_by_snapshot(entry.xid):
                    result = None  # already in the snapshot: only the position moves on
                yield RoutedTx(
                    entry.id,
                    entry.lsn,
                    entry.xid,
                    entry.commit_time.timestamp(),
                    tuple(result.changes) if result else (),
                    result.refetch if result else False,
                )

    def _seen_by_snapshot(self, xid: int) -> bool:
        if self._stamp is None:
            return False
        if self._stamp.includes(xid):
            return True
        self._stamp = None
        return False
