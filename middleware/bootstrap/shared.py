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

Requests are read `PIPELINE_READS` at a time in one round trip (a pipeline):
the shapes of 20,000 subscriptions starting at once took as many round trips,
each a wait on Postgres and a turn of the event loop. The rows are the same:
every statement of the transaction sees its one snapshot.

"In the order they came" is per owner (the session passes its connection's
send budget): requests are served in turn, one of each owner with requests
waiting, so a client starting thousands of subscriptions on one connection
delays another connection's first snapshot by one request, not by thousands.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
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
# Shapes read in one round trip; at most this many times `held_rows` + 1 rows held.
PIPELINE_READS = 32

Request = tuple[RowQuery, "asyncio.Future[LiveRows]"]


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
        # Requests waiting, by owner; the owners with requests waiting, in turn.
        self._waiting: dict[object, deque[Request]] = {}
        self._turns: deque[object] = deque()
        # Requests a transaction could not serve (see `_serve_in`): served first.
        self._again: deque[Request] = deque()
        self._serving: set[asyncio.Task[None]] = set()

    async def open(self, query: RowQuery, owner: object = None) -> LiveRows:
        """`query`'s rows in a snapshot, at a feed position recorded before it; the caller
        closes the source (a `LiveRows` still holding its transaction ends it). Owners
        are served in turn (see the module docstring)."""
        future: asyncio.Future[LiveRows] = asyncio.get_running_loop().create_future()
        self._push(owner, (query, future))
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
        while self._waiting or self._again:
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
        while (
            (self._waiting or self._again)
            and served < BATCH_READS
            and time.monotonic() < deadline
        ):
            batch = self._take(min(PIPELINE_READS, BATCH_READS - served))
            if not batch:
                continue  # their subscriptions went away meanwhile
            results, error = await read.first_of_each(
                [(query.sql, query.params) for query, _ in batch], self.held_rows + 1
            )
            taken: Request | None = None
            later: list[Request] = []
            for request, rows in zip(batch, results, strict=False):
                query, future = request
                if future.done():
                    continue
                served += 1
                if len(rows) <= self.held_rows:
                    future.set_result(HeldRows(read, position, query, rows))
                elif taken is None:
                    taken = request  # gets the rest of the transaction, once the batch is out
                else:
                    later.append(request)  # a bigger one again: in the next transaction
            if error is not None:
                # The transaction is aborted now: the one that failed gets the error; the
                # ones after it, and a big one that would read on in it, wait for the next.
                if taken is not None:
                    later.insert(0, taken)
                    taken = None
                later.extend(batch[len(results) + 1:])
                failed = batch[min(len(results), len(batch) - 1)][1]
                if not failed.done():
                    failed.set_exception(error)
            self._push_back(later)
            if taken is not None:
                taken[1].set_result(LiveRows(read, position, taken[0], exits))
                return True
            if error is not None:
                return False
        return False

    def _push(self, owner: object, request: Request) -> None:
        queue = self._waiting.get(owner)
        if queue is None:
            queue = self._waiting[owner] = deque()
            self._turns.append(owner)
        queue.append(request)

    def _push_back(self, requests: Iterable[Request]) -> None:
        """`requests` served again first, before any owner's."""
        self._again.extendleft(reversed(list(requests)))

    def _take(self, most: int) -> list[Request]:
        """Up to `most` requests still wanted: those to serve again, then one of each
        owner in turn."""
        batch: list[Request] = []
        while self._again and len(batch) < most:
            request = self._again.popleft()
            if not request[1].done():
                batch.append(request)
        while self._turns and len(batch) < most:
            owner = self._turns.popleft()
            queue = self._waiting[owner]
            request = queue.popleft()
            if queue:
                self._turns.append(owner)
            else:
                del self._waiting[owner]
            if not request[1].done():
                batch.append(request)
        return batch

    def _fail_all(self, exc: Exception) -> None:
        for _, future in itertools.chain(self._again, *self._waiting.values()):
            if not future.done():
                future.set_exception(exc)
        self._again.clear()
        self._waiting.clear()
        self._turns.clear()
