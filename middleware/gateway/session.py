"""One sync subscription: snapshot (or resume from a cursor) → catch-up → live.

Positions are LSNs: a cursor `"<lsn>-<chunk>"` means "every transaction up to
and including the one committed at <lsn> is in the client's copy". The order of
the steps is what makes the copy exact:

1. Without a cursor, record the feed's end *before* the snapshot, then read
   the rows in a REPEATABLE READ transaction together with `pg_current_snapshot()`.
2. Walk the feed back from the recorded position and start the replay before
   the oldest transaction there the snapshot does not see (`_replay_start`).
3. Register at the feed tailer; from then on every transaction above the
   tailer's position lands in this subscription's inbox.
4. Catch up from the replay start to the tailer's position by reading the
   feed (`catch_up`: the tailer's decoded entries, else Redis), wait for the
   tailer to be reading the feed (a tailer that cannot reach Redis would leave
   the client "up to date" and then silent: the client gets an error instead,
   after `TAILER_WAIT_S`), then send `upToDate` with a cursor, then go live.
5. Skip every replayed transaction the snapshot saw (by xid).

Visibility does *not* follow the feed's (commit-LSN) order. Postgres writes a
commit record before it makes the transaction visible (ProcArrayEndTransaction),
and a synchronous commit waits for its standby in between, so a transaction can
be in the feed at or before the recorded position and still invisible to the
snapshot taken afterwards (step 2 replays it), and a transaction after one the
snapshot does not see can be one it does see (step 5 keeps skipping).

The subscription ends with one `mustRefetch` message when the client's copy
can no longer be kept exact by changes: a cursor after which entries were
trimmed, or past the feed's end (see `pgsift.middleware.feed.bounds`; also
checked for every batch the catch-up reads, as trimming may overtake it), a
TRUNCATE of the table (the gateway does not know which rows the client holds,
so it does not send DELETEs for them), a schema change of the table, or the
connection's send queue overflowing. A transaction
is delivered whole: its chunks are assembled first (holding only the events
routed to this shape), then sent as one message, or as several of at most
`gateway_max_message_bytes` where only the last carries the cursor.

On a connection bound to a client (`clientId`), the transactions that ran its
mutations come with `confirmed`, at their own cursor, changes or not; a start
from a snapshot puts the ledger version it holds on the first message with a
cursor (docs/writes.md section 5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import replace

import psycopg
from psycopg_pool import PoolTimeout

from pgsift.middleware.bootstrap.connections import SnapshotPool
from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.bootstrap.shared import SharedSnapshots
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery, RowSource
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.catch_up import (
    CatchUpEnd,
    CatchUpRouter,
    entries_after,
)
from pgsift.middleware.gateway.fanout import FeedSource, FeedTailer
from pgsift.middleware.gateway.inbox import SendBudget
from pgsift.middleware.gateway.messages import (
    REFETCH,
    SyncMessage,
    batched,
    insert_messages,
)
from pgsift.middleware.gateway.metrics import GatewayMetrics, SnapshotSource
from pgsift.middleware.gateway.reassembly import RoutedTx, TxRouter
from pgsift.middleware.gateway.replay import parse_cursor, replay_start
from pgsift.middleware.mutations.confirmed import ClientBinding, Confirmed, read_confirmed
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

# How long a subscription waits, before `upToDate`, for a tailer that is not
# reading the feed (Redis unreachable); then the client gets an error.
TAILER_WAIT_S = 10.0

# The snapshot stamp is forgotten at the first replayed transaction this many
# xids past its xmax: every xid at or above xmax belonged to a transaction still
# running when the snapshot was taken, and far fewer than this run at once, so
# that transaction began after the snapshot and committed after every one it
# saw. Forgetting keeps 32-bit feed xids from being widened past wraparound.
STAMP_HORIZON_XIDS = 1 << 30
# A snapshot whose connection broke (or idled past its timeout) mid-read.
SNAPSHOT_LOST = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout)
SNAPSHOT_LOST_MESSAGE = (
    "the snapshot could not be read to the end (too slow a reader, or the database went "
    "away); subscribe again"
)


class SyncSession:
    """The message stream of one `sync(query, params, cursor)` subscription."""

    # One per subscription, alive as long as it is: no per-instance dict.
    __slots__ = (
        "_budget",
        "_client",
        "_cursor",
        "_dump",
        "_initial",
        "_last_read",
        "_max_bytes",
        "_metrics",
        "_pool",
        "_reader",
        "_retention",
        "_snapshots",
        "_stamp",
        "_tailer",
        "shape",
    )

    def __init__(
        self,
        *,
        shape: Shape,
        cursor: str | None,
        reader: FeedSource,
        retention: AsyncFeedRetention,
        tailer: FeedTailer,
        pool: SnapshotPool,
        budget: SendBudget,
        max_message_bytes: int,
        metrics: GatewayMetrics | None = None,
        dump: RowSource | None = None,
        client: ClientBinding | None = None,
        snapshots: SharedSnapshots | None = None,
    ) -> None:
        self.shape = shape
        # Where the snapshot of a subscription without a client comes from, if not its own.
        self._snapshots = snapshots
        self._dump = dump
        self._client = client
        # The ledger version the starting snapshot holds: on the first message with a cursor.
        self._initial: Confirmed | None = None
        # Set by the snapshot (or a bootstrap's cursor or a dump); forgotten past
        # STAMP_HORIZON_XIDS.
        self._stamp: Snapshot | None = None
        self._cursor: FeedPosition | None = None
        if cursor is not None:
            self._cursor, self._stamp = parse_cursor(cursor)
        self._last_read: FeedPosition | None = None  # the last feed position the catch-up read
        # The catch-up reads `reader`; bounds and the walk back come from `retention`.
        self._reader, self._retention, self._tailer = reader, retention, tailer
        self._pool, self._budget, self._metrics = pool, budget, metrics
        self._max_bytes = max_message_bytes

    async def messages(self) -> AsyncIterator[SyncMessage]:
        if self._cursor is None:
            started = time.monotonic()
            source = self._dump or await self._live_source()
            position = source.cursor.position
            async with aclosing(self._bootstrap(source, started)) as bootstrap:
                async for message in bootstrap:
                    yield message
                    # This frame lives as long as the subscription: it must not keep the
                    # snapshot's last rows (nor, below, the source) alive that long.
                    del message
            del bootstrap, source
            if self._stamp is not None:
                position = await self._replay_start(position, self._stamp)
        else:
            position = await self._resume_start(self._cursor)
        # A long snapshot may have outlived the feed's retention.
        retained = await self._retained(position)
        if not retained:
            yield REFETCH
            return
        inbox = self._tailer.subscribe(self.shape, self._budget, self._client)
        reached = CatchUpEnd(position, position.lsn)
        catch_up = self._caught_up(reached, inbox.after_lsn)
        closing: AsyncGenerator[SyncMessage, None] | None = catch_up
        try:
            async for message in catch_up:
                yield message
                if message.must_refetch:
                    return
                del message
            position, done = reached.position, reached.done
            # Done with: not kept as long as the subscription.
            await catch_up.aclose()
            closing = None
            del catch_up, reached
            if self._cursor is not None:
                # Which side of the handoff skipped, should a resumed client ever miss
                # transactions: the catch-up (up to `last read`) or the tailer (after `end`).
                log.info("subscription to %s resumed from %s: catch-up end %s, last read %s",
                         self.shape.key, self._cursor, FeedPosition.of(inbox.after_lsn),
                         self._last_read)
            yield await self._up_to_date(position)
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
                for message in live.live_messages(self._max_bytes):
                    yield message
        finally:
            if closing is not None:
                await closing.aclose()
            self._tailer.unsubscribe(inbox)

    async def _caught_up(
        self, reached: CatchUpEnd, through: int
    ) -> AsyncGenerator[SyncMessage, None]:
        """The catch-up from `reached` to the handoff LSN `through` as messages, moving
        `reached` along; it ends after a `mustRefetch`. Transactions the client need not
        hear of (not its shape, in its snapshot) only move the position."""
        async with aclosing(self._catch_up(reached.position, reached.done, through)) as txs:
            async for tx in txs:
                if tx.refetch:
                    yield REFETCH
                    return
                reached.position, reached.done = tx.id, tx.lsn
                if not tx.changes and tx.confirmed is None:
                    continue
                for message in batched(
                    tx.changes, max_bytes=self._max_bytes, cursor=tx.id, up_to_date=False,
                    confirmed=tx.confirmed,
                ):
                    yield self._first(message)
        if through > reached.done:
            reached.position, reached.done = FeedPosition.of(through), through

    async def _up_to_date(self, position: FeedPosition) -> SyncMessage:
        """The `upToDate` message at `position`, once the tailer reads the feed (see step 4)."""
        if not await self._tailer.wait_ready(TAILER_WAIT_S):
            raise GatewayError(
                "the gateway cannot read the change feed right now (is Redis reachable?); "
                "subscribe again with the last cursor"
            )
        return self._first(SyncMessage((), position, up_to_date=True))

    def _first(self, message: SyncMessage) -> SyncMessage:
        """`message`, with the snapshot's confirmation if it is the first with a cursor
        (the snapshot's rows are all out by then; one it already carries is later: wins)."""
        if self._initial is None or message.cursor is None:
            return message
        initial, self._initial = self._initial, None
        return message if message.confirmed is not None else replace(message, confirmed=initial)

    async def _snapshot_confirmed(self, source: RowSource | None) -> Confirmed | None:
        """The client's ledger version the starting snapshot holds (see `read_confirmed`)."""
        if self._client is None:
            return None
        try:
            if isinstance(source, LiveRows):  # in the snapshot: what the rows hold
                return await read_confirmed(source.read.conn, self._client, None)
            async with self._pool.connection() as conn:
                return await read_confirmed(conn, self._client, self._stamp)
        except PoolTimeout as exc:
            raise GatewayError(
                "the gateway is busy: no database connection came free to read the client's "
                "ledger; subscribe again later"
            ) from exc
        except SNAPSHOT_LOST as exc:
            raise GatewayError(SNAPSHOT_LOST_MESSAGE) from exc

    async def before_snapshot(self, position: FeedPosition) -> None:
        """Called between recording the feed `position` and taking the snapshot.

        Does nothing; a seam for tests that commit transactions in between.
        """

    async def _resume_start(self, cursor: FeedPosition) -> FeedPosition:
        """Where the replay for a client's `cursor` starts: there, or for a bootstrap's
        cursor (whose snapshot holds rows) before what that snapshot does not see, once
        the ledger version it holds is read."""
        if self._stamp is None:
            return cursor
        self._initial = await self._snapshot_confirmed(None)
        return await self._replay_start(cursor, self._stamp)

    async def _replay_start(self, position: FeedPosition, stamp: Snapshot) -> FeedPosition:
        """Where the replay of a snapshot recorded at `position` must start (`replay`);
        the walk back reads the tailer's decoded entries when it holds them."""
        return await replay_start(self._retention, position, stamp, self._tailer.recent)

    async def _live_source(self) -> RowSource:
        """Record the feed's end, then take the snapshot on a pooled connection (or join
        a shared one: a session with a client reads the ledger in its own snapshot)."""
        if self._snapshots is not None and self._client is None:
            with self._snapshot_errors():
                # Owned by the connection (its budget): connections take turns.
                return await self._snapshots.open(RowQuery.of_shape(self.shape), self._budget)
        position = (await self._retention.bounds()).end
        await self.before_snapshot(position)
        return await self._open_live(position)

    async def _open_live(self, position: FeedPosition) -> LiveRows:
        """A snapshot of the shape's rows, recorded at `position`, on a pooled connection."""
        with self._snapshot_errors():
            return await LiveRows.open(
                self._pool.connection(), position, RowQuery.of_shape(self.shape)
            )

    @contextmanager
    def _snapshot_errors(self) -> Iterator[None]:
        """A snapshot that cannot be had, as the client's GatewayError."""
        try:
            yield
        except PoolTimeout as exc:
            raise GatewayError(
                "the gateway is busy: no database connection for the snapshot came free "
                f"within {self._pool.timeout:g} s; subscribe again later"
            ) from exc
        except SNAPSHOT_LOST as exc:
            raise GatewayError(SNAPSHOT_LOST_MESSAGE) from exc

    async def _bootstrap(
        self, source: RowSource, started: float
    ) -> AsyncGenerator[SyncMessage, None]:
        """The source's rows as INSERT messages; the source is closed at the end (or when
        the consumer stops early: the snapshot's connection goes back to the pool at once).
        Its snapshot becomes the session's stamp, and the ledger version it holds goes on
        the first message with a cursor (`_first`). Streamed in full, it is counted and
        timed from `started` (monotonic) by source."""
        self._stamp = source.cursor.snapshot
        try:
            try:
                self._initial = await self._snapshot_confirmed(source)
                inserts = insert_messages(source.rows(), self.shape.primary_key, self._max_bytes)
                async with aclosing(inserts):
                    async for message in inserts:
                        yield message
            finally:
                await source.close()
        except SNAPSHOT_LOST as exc:
            raise GatewayError(SNAPSHOT_LOST_MESSAGE) from exc
        if self._metrics:
            kind: SnapshotSource = "postgres" if source.kind == "live" else "dump"
            self._metrics.snapshot_streamed(kind, time.monotonic() - started)

    async def _retained(self, cursor: FeedPosition) -> bool:
        """Whether the feed still holds everything after `cursor` (see feed.bounds)."""
        return await self._retention.retains(cursor)

    async def _catch_up(
        self, cursor: FeedPosition, done: int, through: int
    ) -> AsyncGenerator[RoutedTx, None]:
        """Every whole transaction in (done, through], read from the feed; without changes
        when it does not touch the shape or the snapshot already holds it."""
        if done >= through:
            return
        router = self._catch_up_router()
        while done < through:
            entries = await entries_after(
                cursor, self._tailer.recent, self._reader, self._retention
            )
            if entries is None:
                yield RoutedTx(cursor, done, 0, 0.0, (), True)
                return
            for entry in entries:
                if entry.lsn > through:
                    return
                cursor = self._last_read = entry.id
                if entry.lsn <= done:
                    continue
                routed = router.route(entry)
                if routed is None:
                    continue
                done = entry.lsn
                seen = self._seen_by_snapshot(entry.xid)
                tx = routed.get(self)
                if tx is None or seen:
                    # Not of this shape, or already in the snapshot: only the position moves on.
                    tx = RoutedTx(entry.id, entry.lsn, entry.xid, 0.0, (), False)
                yield tx

    def _catch_up_router(self) -> CatchUpRouter:
        """The tailer's routing path, for this one subscription."""
        router: TxRouter[SyncSession] = TxRouter(self._tailer.max_tx_changes)
        router.add(self.shape, self, self._client)
        return router

    def _seen_by_snapshot(self, xid: int) -> bool:
        stamp = self._stamp
        if stamp is None:
            return False
        if stamp.visible(xid):
            return True
        if stamp.widen(xid) >= stamp.xmax + STAMP_HORIZON_XIDS:
            self._stamp = None
        return False
