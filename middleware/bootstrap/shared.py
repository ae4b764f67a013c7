"""Snapshots shared by the subscriptions that start together.

    snapshots = SharedSnapshots(connections, retention)
    source = await snapshots.open(RowQuery.of_shape(shape))   # a LiveRows; close() it

Taking a snapshot of its own costs a subscription more than reading a small
shape's rows: a pooled connection's checkout (and liveness check), BEGIN,
`pg_current_snapshot()`, DECLARE/FETCH/CLOSE and COMMIT, each a round trip and
a turn of the event loop. When many subscriptions start at once (a gateway
restarting, a client with thousands of them), one snapshot transaction serves
them in turn instead: each shape's rows are read in one statement limited to
`held_rows + 1` rows. A shape with no more rows than `held_rows` is done: its
rows are held in memory (`HeldRows`) and the transaction goes on to the next
one. A bigger shape gets the rest of the transaction to itself: its rows are
read again through a cursor in the same snapshot (`LiveRows`), and the next
transaction serves the others.

Every transaction records the feed position before taking its snapshot, as
every live bootstrap does (`sources`); all the sources it gives out carry that
position and that stamp. A subscription that joins a snapshot taken a moment
before it asked gets rows that much older and catches up from that position
like any other. A transaction serves at most `BATCH_READS` shapes for at most
`BATCH_S` seconds (the older its snapshot, the longer the catch-ups), then a
fresh one is taken. Requests are served in the order they came, by at most
`workers` transactions at once, each on a connection of the gateway's one
snapshot pool; when none comes free within the pool's wait, every request
waiting fails with `PoolTimeout` (the session calls the gateway busy).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from typing import Any

from pgsift.middleware.bootstrap.connections import SnapshotConnections
from pgsift.middleware.bootstrap.snapshot import FETCH_ROWS, SnapshotRead, take_snapshot
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.retention import AsyncFeedRetention

BATCH_READS = 200
BATCH_S = 0.5
# Transactions serving requests at once: more only crowd Postgres and the event loop.
WORKERS = 4


class HeldRows(LiveRows):
    """A shape's rows read whole from a shared snapshot, held until they are streamed.

    Its transaction may have ended: nothing else can be read in it (`statement`)."""

    def __init__(
        self, read: SnapshotRead, position: FeedPosition, query: RowQuery,
        rows: list[tuple[Any, ...]],
    ) -> None:
        super().__init__(read, position, query, AsyncExitStack())
        self._held: list[tuple[Any, ...]] | None = rows

    async def _held_batches(self) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        rows, self._held = self._held, None
        if rows:
            yield rows

    def _batches(self) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        return self._held_batches()


class SharedSnapshots:
    """Snapshot transactions that serve many subscriptions; see the module docstring."""

    def __init__(
        self,
        connections: SnapshotConnections,
        retention: AsyncFeedRetention,
        *,
        workers: int = WORKERS,
        held_rows: int = FETCH_ROWS,
    ) -> None:
        self._connections, self._retention = connections, retention
        self._workers = max(1, min(workers, connections.size))
        self.held_rows = held_rows
        self._waiting: deque[tuple[RowQuery, asyncio.Future[LiveRows]]] = deque()
        self._serving: set[asyncio.Task[None]] = set()

    async def open(self, query: RowQuery) -> LiveRows:
        """`query`'s rows in a snapshot, at a feed position recorded before it; the caller
        closes the source (a `LiveRows` still holding its transaction ends it)."""
        future: asyncio.Future[LiveRows] = asyncio.get_running_loop().create_future()
        self._waiting.append((query, future))
        if len(self._serving) < self._workers:
            task = asyncio.create_task(self._serve(), name="pgsift-shared-snapshots")
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled after the source was handed over: nobody else will close it.
            if future.done() and not future.cancelled() and future.exception() is None:
                await future.result().close()
            raise

    async def close(self) -> None:
        """Stop serving (before the pool closes): requests waiting fail."""
        tasks = list(self._serving)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_all(GatewayError("the gateway is stopping; subscribe again"))

    async def before_snapshot(self, position: FeedPosition) -> None:
        """Called between recording the feed `position` and taking a snapshot.

        Does nothing; a seam for tests that commit transactions in between.
        """

    async def _serve(self) -> None:
        while self._waiting:
            try:
                await self._transaction()
            except Exception as exc:
                # No snapshot (no connection came free, Redis or Postgres failed): every
                # request waiting now gets the error, none waits for ever.
                self._fail_all(exc)

    async def _transaction(self) -> None:
        """One snapshot transaction serving waiting requests (see the module docstring)."""
        position = (await self._retention.bounds()).end
        await self.before_snapshot(position)
        exits = AsyncExitStack()
        try:
            conn = await exits.enter_async_context(self._connections.connection())
            read = await exits.enter_async_context(take_snapshot(conn))
        except BaseException:
            await exits.aclose()
            raise
        handed_over = False
        try:
            handed_over = await self._serve_in(read, position, exits)
        finally:
            if not handed_over:
                await exits.aclose()

    async def _serve_in(
        self, read: SnapshotRead, position: FeedPosition, exits: AsyncExitStack
    ) -> bool:
        """Serve requests in the open snapshot `read`; True when one took it over."""
        deadline = time.monotonic() + BATCH_S
        served = 0
        while self._waiting and served < BATCH_READS and time.monotonic() < deadline:
            query, future = self._waiting.popleft()
            if future.done():
                continue  # its subscription went away meanwhile
            try:
                rows = await read.first(query.sql, query.params, self.held_rows + 1)
            except Exception as exc:
                # The transaction is aborted now: the others wait for the next one.
                if not future.done():
                    future.set_exception(exc)
                return False
            if future.done():
                continue
            served += 1
            if len(rows) <= self.held_rows:
                future.set_result(HeldRows(read, position, query, rows))
                continue
            future.set_result(LiveRows(read, position, query, exits))
            return True
        return False

    def _fail_all(self, exc: Exception) -> None:
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)
