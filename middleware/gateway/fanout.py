"""The feed tailer: one task per gateway process that routes every entry to its subscriptions.

It reads the feed once for all connections of the process, routes each change
through one `RoutingIndex`, tells the batch loader (when there is one) about
the entry before any client can see it, and puts each whole transaction into
the bounded inbox of every subscription it touched. An inbox past its
connection's budget is marked overflowed: the subscription ends with
`mustRefetch` instead of growing server memory.

The tailer never stops on bad input and never skips silently. An entry that
cannot be routed (or read) overflows the inboxes of its tables' subscriptions
(all of them when its tables are unknown) and the tailer goes on after it; a
trim that overtook the tailer's position (checked after every read) overflows
every inbox. Whenever it moves past entries it did not deliver, the handoff
position (`done_lsn`) moves with it, so a subscription registered afterwards
reads those entries in its own catch-up instead of missing them.

Any other failure (Redis unreachable, killed connections, a bug) is logged
and retried from the cursor with backoff; until a read succeeds again the
tailer is not `ready`, and sessions wait for it (`wait_ready`) before telling
a client it is up to date. Only cancellation ends the task: then every inbox
is overflowed and the tailer reports itself stopped (`/healthz`).

The entries it read last stay decoded in `recent` (`RecentEntries`): sessions
that start read their walk back and catch-up there instead of from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from typing import Any, Protocol

import redis.exceptions

from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import START, FeedPosition
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.inbox import Inbox, SendBudget
from pgsift.middleware.gateway.metrics import GatewayMetrics
from pgsift.middleware.gateway.reassembly import TxRouter
from pgsift.middleware.gateway.recent import RecentEntries
from pgsift.middleware.gateway.schema_watch import SchemaWatch
from pgsift.middleware.gateway.set_loading import Connect, SetLoads
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.middleware.mutations.confirmed import ClientBinding
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

READ_BATCH = 500
BLOCK_MS = 1000
# Backoff between attempts after a failure: doubling from RETRY_S up to RETRY_MAX_S.
RETRY_S = 0.2
RETRY_MAX_S = 5.0


class FeedSource(Protocol):
    """Where entries are read (`pgsift.middleware.feed.reader.AsyncFeedReader`)."""

    async def read_after(
        self, cursor: FeedPosition | None, count: int = ..., block_ms: int | None = ...
    ) -> list[FeedEntry]: ...


class FeedObserver(Protocol):
    """The batch loader's cache invalidation hooks."""

    def observe(self, entry: FeedEntry) -> Any:
        """Forget what `entry` changes (sync or async)."""

    def forget_all(self) -> None:
        """Forget everything: the tailer skipped entries it could not read."""


class FeedTailer:
    """Tails the feed from the position it had at start-up; see the module docstring."""

    def __init__(
        self,
        source: FeedSource,
        retention: AsyncFeedRetention,
        *,
        loader: FeedObserver | None = None,
        metrics: GatewayMetrics | None = None,
        batch: int = READ_BATCH,
        block_ms: int = BLOCK_MS,
        schema_watch: SchemaWatch | None = None,
        max_tx_changes: int | None = None,
        sets: SetRegistry | None = None,
        sets_connection: Connect | None = None,
        sets_feed: AsyncFeedRetention | None = None,
    ) -> None:
        # Reads entries from `source`; bounds, and what cannot be decoded, from `retention`.
        self._source, self._retention = source, retention
        self._batch, self._block_ms = batch, block_ms
        self.loader, self._schema_watch, self._metrics = loader, schema_watch, metrics
        self.max_tx_changes = max_tx_changes  # per subscription and transaction; then refetch
        self._router: TxRouter[Inbox] = TxRouter(max_tx_changes, sets=sets)
        self.sets: SetRouter[Inbox] | None = self._router.sets  # relational routing, if any
        # Relational subscriptions attach between transactions (`set_loading`).
        self._loads: SetLoads[Inbox] | None = None
        if self._router.sets is not None and sets_connection is not None:
            # Set loads read the feed on a connection XREAD does not hold (`sets_feed`).
            self._loads = SetLoads(self._router.sets, sets_connection, sets_feed or retention)
        self._shape_refs: dict[str, int] = {}
        self._cursor: FeedPosition | None = None
        # Every transaction up to here has been delivered, or its subscribers were
        # told to refetch: the end of a newly registered subscription's catch-up.
        self.done_lsn = 0
        self._ready = asyncio.Event()
        self.stopped = False  # the task ended (cancelled): nothing will be delivered
        self.last_error: str | None = None  # why the last attempt failed
        self.started = asyncio.Event()
        self._retry_s = RETRY_S
        # The entries read last, for sessions starting now (their walk back and catch-up).
        self.recent = RecentEntries()

    async def start(self) -> None:
        """Take the feed's current end as the starting point (call before `run`)."""
        bounds = await self._retention.bounds()
        self._cursor = bounds.end
        self.done_lsn = self._cursor.lsn
        await self._hold_newest(bounds.trimmed or START)
        self.started.set()

    async def _hold_newest(self, trimmed: FeedPosition) -> None:
        """Hold the feed's newest entries up to the cursor in `recent` from the start, so
        that subscriptions to a gateway that just started walk back in memory too."""
        feed, end, count = self._retention, self._cursor or START, self.recent.max_entries
        self.recent.reset(end)  # holding nothing yet, should the read fail
        if not count:
            return
        try:
            newest = await feed.run(feed.queries.entries_before(end, count))
        except Exception:
            log.exception("reading the newest feed entries failed; sessions read Redis")
            return
        # Fewer than asked: the whole retained feed (every entry after the trim marker).
        # Else the oldest one read only marks where the run held starts.
        start = trimmed if len(newest) < count else newest.pop().id
        self.recent.reset(start)
        for entry in reversed(newest):
            self.recent.append(entry)

    @property
    def cursor(self) -> FeedPosition | None:
        """The last feed position read (None before `start`)."""
        return self._cursor

    @property
    def ready(self) -> bool:
        """Whether the last read of the feed succeeded (and the task runs)."""
        return self._ready.is_set()

    @ready.setter
    def ready(self, value: bool) -> None:
        if value:
            self._ready.set()
        else:
            self._ready.clear()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the tailer to be reading the feed; whether it is."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.ready:
            remaining = deadline - asyncio.get_running_loop().time()
            if self.stopped or remaining <= 0:
                return False
            # In slices: a tailer that stops meanwhile does not set the event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, RETRY_MAX_S)):
                    await self._ready.wait()
        return True

    @property
    def position_lsn(self) -> int:
        """Transactions above this LSN will reach a subscription registered now."""
        in_flight = self._router.in_flight_lsn
        return self.done_lsn if in_flight is None else in_flight

    def subscribe(
        self, shape: Shape, budget: SendBudget, client: ClientBinding | None = None
    ) -> Inbox:
        """An inbox for `shape`'s transactions (and those confirming `client`'s mutations)."""
        inbox = Inbox(shape, budget, self.position_lsn)
        self._router.add(shape, inbox, client)
        self._shape_refs[shape.key] = self._shape_refs.get(shape.key, 0) + 1
        if self._metrics:
            self._metrics.subscriptions.inc()
            self._metrics.shapes.set(len(self._shape_refs))
        return inbox

    async def attach(
        self, shape: Shape, budget: SendBudget, client: ClientBinding | None = None
    ) -> Inbox:
        """`subscribe` for any shape; one with inner sets attaches between transactions,
        once its sets are loaded (`set_loading`; SetBoundError past the memory bound)."""
        if not shape.inner_sets:
            return self.subscribe(shape, budget, client)
        if self._loads is None or self.stopped:
            raise GatewayError("this gateway does not keep inner sets now; subscribe again")
        make = lambda: self.subscribe(shape, budget, client)  # noqa: E731
        return await self._loads.request(shape, make, self.unsubscribe)

    def unsubscribe(self, inbox: Inbox) -> None:
        self._router.remove(inbox.shape, inbox)
        if inbox.shape.inner_sets and self.sets is not None:
            self.sets.registry.release(inbox.shape.inner_sets)
        inbox.release()
        refs = self._shape_refs.pop(inbox.shape.key, 1) - 1
        if refs:
            self._shape_refs[inbox.shape.key] = refs
        if self._metrics:
            self._metrics.subscriptions.dec()
            self._metrics.shapes.set(len(self._shape_refs))

    async def run(self) -> None:
        """Tail until cancelled; failures are retried from the cursor (see the module doc)."""
        try:
            while True:
                try:
                    await self._tail()
                except Exception as exc:
                    self.ready = False
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("tailing the feed failed after %s; retrying in %.1f s",
                                  self._cursor, self._retry_s)
                    await asyncio.sleep(self._retry_s)
                    self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        except BaseException:
            # Cancelled (shutdown): no subscription may wait for transactions that
            # will never come.
            self.ready = False
            self.stopped = True
            self._overflow(self._router.listeners())
            if self._loads is not None:
                self._loads.fail_all(GatewayError("the feed tailer stopped; subscribe again"))
            raise

    async def _tail(self) -> None:
        if not self.started.is_set():
            await self.start()
        batch = self._batch
        while True:
            try:
                entries = await self._read(batch)
            except (redis.exceptions.RedisError, OSError):
                raise  # not the entries' fault: retried from the cursor by `run`
            except Exception:
                # An entry that does not decode: narrow the read down to it.
                if batch > 1:
                    batch = 1
                else:
                    await self._skip_unreadable()
                continue
            batch = self._batch
            await self._check_retained(entries)
            self.ready = True
            self._retry_s = RETRY_S
            routed_before, consumed = self._router.routed_changes, 0
            try:
                for entry in entries:
                    try:
                        if await self._consume(entry):
                            consumed += 1
                    except Exception:
                        log.exception("routing feed entry %s failed; its subscribers must "
                                      "refetch", entry.id)
                        self._overflow(self._router.listeners_of(entry))
                    self._cursor = entry.id
                    self.recent.append(entry)
                    if self._loads is not None:
                        await self._loads.serve_at(self._boundary())
            finally:
                self._count(entries, routed_before, consumed)

    def _count(self, entries: list[FeedEntry], routed_before: int, consumed: int) -> None:
        """The metrics of one read, updated once for all its entries instead of three
        metric updates (each taking a lock) and a clock read per entry."""
        if self._metrics is None or not consumed:
            return
        self._metrics.routed_changes.inc(self._router.routed_changes - routed_before)
        self._metrics.feed_entries.inc(consumed)
        newest = entries[-1].commit_time.timestamp()
        self._metrics.feed_lag.set(max(0.0, time.time() - newest))

    async def _read(self, batch: int) -> list[FeedEntry]:
        reading = self._source.read_after(self._cursor, batch, self._block_ms)
        if self._loads is None:
            return await reading
        return await self._loads.while_reading(reading, self._boundary)

    def _boundary(self) -> FeedPosition | None:
        """The tailer's position when it is between two transactions."""
        return None if self._router.in_flight_lsn is not None else self._cursor or START

    async def _check_retained(self, entries: list[FeedEntry]) -> None:
        """Whether something after the cursor was trimmed before the last read.

        If something was, every subscriber must refetch and the handoff position
        moves past what was lost (past everything, when nothing was read: the
        cursor jumps to the feed's end).
        """
        bounds = await self._retention.bounds()
        if bounds.retains(self._cursor or START):
            return
        log.error("the feed was trimmed past the tailer's position %s", self._cursor)
        self._lost_entries()
        if entries:
            # The entries read follow the trim marker: what is held starts there.
            self._passed_over(bounds.trimmed or START)
            self.recent.reset(bounds.trimmed or START)
        else:
            self._passed_over(bounds.end)
            self._cursor = bounds.end
            self.recent.reset(bounds.end)

    async def _skip_unreadable(self) -> None:
        """Step over the entry after the cursor, which cannot be decoded."""
        feed = self._retention
        after = await feed.run(feed.queries.positions_from((self._cursor or START).exclusive, 1))
        if not after:
            return  # trimmed meanwhile: the retention check sees to it
        bad = after[0]
        log.exception("feed entry %s cannot be read; every subscriber must refetch", bad)
        self._lost_entries()
        self._passed_over(bad)
        self._cursor = bad
        self.recent.reset(bad)

    def _lost_entries(self) -> None:
        """Entries went by unseen: every subscriber must refetch, every cached row may be stale."""
        self._overflow(self._router.listeners())
        if self.loader is not None:
            self.loader.forget_all()

    def _passed_over(self, position: FeedPosition) -> None:
        """The tailer moves past entries up to `position` that it did not deliver.

        The handoff position moves with it, so that a subscription registered
        from now on catches up through them from the feed itself (or learns
        there that they are gone); the rest of a transaction cut short is dropped.
        """
        self.done_lsn = max(self.done_lsn, position.lsn)
        self._router.reset()

    def _overflow(self, inboxes: set[Inbox]) -> None:
        for inbox in inboxes:
            inbox.overflow()
            if self._metrics:
                self._metrics.queue_drops.inc()

    async def _consume(self, entry: FeedEntry) -> bool:
        """Route `entry`; False when it was delivered before the tailer started."""
        if entry.lsn <= self.done_lsn:
            return False  # the rest of a transaction that was under way when we started
        if self.loader is not None:
            try:
                observed = self.loader.observe(entry)
                if inspect.isawaitable(observed):
                    await observed
            except Exception:
                log.exception("the batch loader failed to observe feed entry %s; "
                              "it forgets every cached row", entry.id)
                self.loader.forget_all()
        if self._schema_watch is not None:
            self._schema_watch.observe(entry)
        routed = self._router.route(entry)
        if routed is None:
            return True
        self.done_lsn = entry.lsn
        for inbox, tx in routed.items():
            if inbox.after_lsn < entry.lsn and not inbox.offer(tx) and self._metrics:
                self._metrics.queue_drops.inc()
        return True
