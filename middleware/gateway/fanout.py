"""The feed tailer: one task per gateway process that routes every entry to its subscriptions.

It reads the feed once for all connections of the process, routes each change
through one `RoutingIndex`, tells the batch loader (when there is one) about
the entry before any client can see it, and puts each whole transaction into
the bounded inbox of every subscription it touched. An inbox past its
connection's budget is marked overflowed: the subscription ends with
`mustRefetch` instead of growing server memory.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pgsift.middleware.feed.entry import FeedEntry, parse_stream_id
from pgsift.middleware.gateway.metrics import GatewayMetrics
from pgsift.middleware.gateway.transactions import Routed, RoutedTx, TxAssembler
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

READ_BATCH = 500
BLOCK_MS = 1000
RETRY_S = 0.5


class FeedSource(Protocol):
    """The async feed reader (`pgsift.middleware.feed.reader.AsyncFeedReader`)."""

    async def read_after(
        self, cursor: str | None, count: int = ..., block_ms: int | None = ...
    ) -> list[FeedEntry]: ...

    async def first_id(self) -> str | None: ...

    async def last_id(self) -> str | None: ...


class FeedObserver(Protocol):
    """The batch loader's cache invalidation hook (sync or async)."""

    def observe(self, entry: FeedEntry) -> Any: ...


class SendBudget:
    """How many transactions may wait for one connection, across its subscriptions."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0


class Inbox:
    """One subscription's queue at the tailer; the listener registered in the index."""

    def __init__(self, shape: Shape, budget: SendBudget, after_lsn: int) -> None:
        self.shape = shape
        self.budget = budget
        # Transactions at or below this LSN are the session's catch-up, not ours.
        self.after_lsn = after_lsn
        self.overflowed = False
        self.closed = False
        self._queue: deque[RoutedTx] = deque()
        self._wake = asyncio.Event()

    def offer(self, tx: RoutedTx) -> bool:
        """Queue `tx`; False (and overflowed from now on) when the budget is spent."""
        if self.closed:
            return True  # unsubscribed while its transaction was being routed: drop it
        if self.overflowed:
            return False
        if self.budget.used >= self.budget.capacity:
            self.overflowed = True
            self.budget.used -= len(self._queue)
            self._queue.clear()
            self._wake.set()
            return False
        self._queue.append(tx)
        self.budget.used += 1
        self._wake.set()
        return True

    async def get(self) -> RoutedTx | None:
        """The next transaction, or None once overflowed."""
        while not self._queue and not self.overflowed:
            self._wake.clear()
            await self._wake.wait()
        if self.overflowed:
            return None
        self.budget.used -= 1
        return self._queue.popleft()

    def release(self) -> None:
        self.closed = True
        self.budget.used -= len(self._queue)
        self._queue.clear()


class FeedTailer:
    """Tails the feed from the position it had at start-up; see the module docstring."""

    def __init__(
        self,
        source: FeedSource,
        *,
        loader: FeedObserver | None = None,
        metrics: GatewayMetrics | None = None,
        batch: int = READ_BATCH,
        block_ms: int = BLOCK_MS,
        on_schema_change: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self._source = source
        self._on_schema_change = on_schema_change
        self.loader = loader
        self._metrics = metrics
        self._batch = batch
        self._block_ms = block_ms
        self._index: RoutingIndex[Inbox] = RoutingIndex()
        self._by_table: dict[str, set[Inbox]] = {}
        self._shape_refs: dict[str, int] = {}
        self._assembler: TxAssembler[Inbox] = TxAssembler(
            self._index, lambda table: tuple(self._by_table.get(table, ()))
        )
        self._cursor: str | None = None
        self.done_lsn = 0  # every transaction up to here has been delivered
        self.ready = False
        self.started = asyncio.Event()

    async def start(self) -> None:
        """Take the feed's current end as the starting point (call before `run`)."""
        self._cursor = await self._source.last_id()
        self.done_lsn = parse_stream_id(self._cursor)[0] if self._cursor else 0
        self.started.set()

    @property
    def position_lsn(self) -> int:
        """Transactions above this LSN will reach a subscription registered now."""
        in_flight = self._assembler.in_flight_lsn
        return self.done_lsn if in_flight is None else in_flight

    def subscribe(self, shape: Shape, budget: SendBudget) -> Inbox:
        inbox = Inbox(shape, budget, self.position_lsn)
        self._index.add(shape, inbox)
        self._by_table.setdefault(shape.table, set()).add(inbox)
        self._shape_refs[shape.key] = self._shape_refs.get(shape.key, 0) + 1
        if self._metrics:
            self._metrics.subscriptions.inc()
            self._metrics.shapes.set(len(self._shape_refs))
        return inbox

    def unsubscribe(self, inbox: Inbox) -> None:
        self._index.remove(inbox.shape, inbox)
        inboxes = self._by_table.get(inbox.shape.table)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del self._by_table[inbox.shape.table]
        inbox.release()
        refs = self._shape_refs.pop(inbox.shape.key, 1) - 1
        if refs:
            self._shape_refs[inbox.shape.key] = refs
        if self._metrics:
            self._metrics.subscriptions.dec()
            self._metrics.shapes.set(len(self._shape_refs))

    async def run(self) -> None:
        if not self.started.is_set():
            await self.start()
        while True:
            try:
                entries = await self._source.read_after(self._cursor, self._batch, self._block_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.ready = False
                log.exception("reading the feed failed; retrying")
                await asyncio.sleep(RETRY_S)
                continue
            self.ready = True
            for entry in entries:
                await self._consume(entry)
                self._cursor = entry.id

    async def _consume(self, entry: FeedEntry) -> None:
        if entry.lsn <= self.done_lsn:
            return  # the rest of a transaction that was under way when we started
        if self.loader is not None:
            try:
                observed = self.loader.observe(entry)
                if inspect.isawaitable(observed):
                    await observed
            except Exception:
                log.exception("the batch loader failed to observe feed entry %s", entry.id)
        if entry.schema_changes and self._on_schema_change is not None:
            self._on_schema_change(entry.schema_changes)
        before = self._assembler.routed_changes
        routed = self._assembler.add(entry)
        if self._metrics:
            self._metrics.routed_changes.inc(self._assembler.routed_changes - before)
            self._metrics.feed_entries.inc()
            self._metrics.feed_lag.set(max(0.0, time.time() - entry.commit_time.timestamp()))
        if routed is None:
            return
        self.done_lsn = entry.lsn
        self._deliver(entry, routed)

    def _deliver(self, entry: FeedEntry, routed: dict[Inbox, Routed]) -> None:
        commit_time = entry.commit_time.timestamp()
        for inbox, result in routed.items():
            if inbox.after_lsn >= entry.lsn:
                continue
            tx = RoutedTx(
                entry.id, entry.lsn, entry.xid, commit_time, tuple(result.changes), result.refetch
            )
            if not inbox.offer(tx) and self._metrics:
                self._metrics.queue_drops.inc()
