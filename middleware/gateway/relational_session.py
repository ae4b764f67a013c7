"""A `sync` subscription whose shape reads inner sets (`x IN (SELECT ...)`, EXISTS).

It differs from `SyncSession` in three places (docs/relational.md, "Live"):

* **Start.** The tailer registers it first (`FeedTailer.attach`): between
  two transactions, at its position `p`, once the shape's inner sets are
  loaded (`set_loading`). Every transaction after `p` reaches the inbox,
  routed with exact sets.
* **Without a cursor**, the rows are read in a snapshot recorded at `p` that
  sees every transaction up to `p` (retaken otherwise), so no catch-up is
  needed: the inbox holds the rest, and transactions the snapshot already saw
  are skipped (by xid, with their moves).
* **With a cursor** `c` (or a bootstrap's `c@snapshot`), the feed `(c, p]` is
  replayed with the sets as they are at `p`. That is exact only if nothing in
  `(c, p]` changed those sets and nothing changed them while the catch-up ran:
  an inner-table change there that may touch a set, or a set delta since the
  attach, ends the subscription with `mustRefetch` (`ResumeRouter`).
* **Live**, a transaction carrying moves is delivered with the rows it moves
  in or out, read at a snapshot that sees it (`moves`).

A subscription whose sets would pass `relational_max_set_bytes` (or are
dropped past it later) gets `mustRefetch`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from psycopg_pool import PoolTimeout

from pgsift.middleware.bootstrap.sources import RowSource
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.gateway.catch_up import CatchUpEnd, CatchUpRouter
from pgsift.middleware.gateway.inbox import Inbox
from pgsift.middleware.gateway.messages import REFETCH, SyncMessage, WireChange, batched
from pgsift.middleware.gateway.moves import MoveReader
from pgsift.middleware.gateway.reassembly import TxAssembler
from pgsift.middleware.gateway.replay import sees_through
from pgsift.middleware.gateway.routed import RoutedTx
from pgsift.middleware.gateway.session import SNAPSHOT_LOST, SyncSession
from pgsift.middleware.gateway.set_loading import SetBoundError
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.middleware.mutations.confirmed import ClientBinding
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.inner import walk_sets
from pgsift.subscriptions.routing import RoutingIndex

# Snapshots of a bootstrap that missed a transaction at or below `p` are retaken
# up to this many times (a commit record precedes visibility by microseconds).
SNAPSHOT_ATTEMPTS = 200
# How long a subscription waits for the tailer to attach it (load its sets).
ATTACH_WAIT_S = 60.0
RETRY_S = 0.01


class RelationalSession(SyncSession):
    """`sync` for a shape with inner sets; see the module docstring."""

    _resume: ResumeRouter | None = None

    async def messages(self) -> AsyncIterator[SyncMessage]:
        sets = self._tailer.sets
        if sets is None:
            raise GatewayError("this gateway does not keep inner sets (IN (SELECT ...))")
        try:
            async with asyncio.timeout(ATTACH_WAIT_S):
                inbox = await self._tailer.attach(self.shape, self._budget, self._client)
        except SetBoundError:
            yield REFETCH
            return
        except TimeoutError:
            raise GatewayError(
                "the gateway could not load this subscription's inner sets in time (is the "
                "feed or the database reachable?); subscribe again"
            ) from None
        try:
            async with aclosing(self._stream(inbox, sets)) as stream:
                async for message in stream:
                    yield message
        finally:
            self._tailer.unsubscribe(inbox)

    async def _stream(
        self, inbox: Inbox, sets: SetRouter[Any]
    ) -> AsyncGenerator[SyncMessage, None]:
        handoff = FeedPosition.of(inbox.after_lsn)
        position, done = handoff, handoff.lsn
        if self._cursor is None:
            started = time.monotonic()
            source = await self._seeing(handoff)
            async with aclosing(self._bootstrap(source, started)) as bootstrap:
                async for message in bootstrap:
                    yield message
        else:
            start = await self._resume_start(self._cursor)
            if not await self._retained(start):
                yield REFETCH
                return
            self._resume = ResumeRouter(self, sets, self._tailer.max_tx_changes, self._client)
            reached = CatchUpEnd(start, start.lsn)
            async with aclosing(self._caught_up(reached, inbox.after_lsn)) as catch_up:
                async for message in catch_up:
                    yield message
                    if message.must_refetch:
                        return
            position, done = reached.position, reached.done
        yield await self._up_to_date(position)
        async with aclosing(self._live(inbox, sets, done)) as live:
            async for message in live:
                yield message

    async def _live(
        self, inbox: Inbox, sets: SetRouter[Any], done: int
    ) -> AsyncGenerator[SyncMessage, None]:
        reader = MoveReader(self.shape, self._pool, sets.reads)
        held: deque[RoutedTx] = deque()
        while True:
            tx = held.popleft() if held else await inbox.get()
            if tx is None:
                yield REFETCH
                return
            if tx.refetch:
                # Even one the bootstrap's snapshot saw: a refetch may mean the tailer
                # dropped this subscription's sets and unregistered it (`SetRouter._evict`),
                # so nothing after it would reach the inbox.
                yield REFETCH
                return
            if tx.lsn <= done or self._seen_by_snapshot(tx.xid):
                continue  # the bootstrap's snapshot holds it, and its moves
            done = tx.lsn
            if any(move.refetch for move in tx.moves):
                yield REFETCH
                return
            changes: list[WireChange] = list(reader.unspliced(tx))
            last, confirmed = tx, tx.confirmed
            if tx.moves:
                try:
                    read = await reader.read(tx)
                except (PoolTimeout, *SNAPSHOT_LOST):
                    read = None  # no snapshot for the move: the client starts over
                if read is None:
                    yield REFETCH
                    return
                sets.snapshot_taken(inbox, tx.moves, read.stamp, read.taken_at)
                held.extend(inbox.drain())
                # The transactions the snapshot saw go out with the move, before its
                # rows, up to one with moves of its own (read next, at a later snapshot).
                while held and read.stamp.visible(held[0].xid) and not held[0].moves:
                    seen = held.popleft()
                    if seen.refetch:  # as above, whatever the snapshots saw
                        yield REFETCH
                        return
                    if seen.lsn <= done or self._seen_by_snapshot(seen.xid):
                        continue
                    done, last = seen.lsn, seen
                    changes.extend(reader.unspliced(seen))
                    confirmed = seen.confirmed or confirmed  # a later one covers the earlier
                reader.spliced(read)
                changes.extend(read.changes)
            for message in batched(
                changes, max_bytes=self._max_bytes, cursor=last.id, up_to_date=True,
                confirmed=confirmed,
            ):
                yield message

    async def _seeing(self, position: FeedPosition) -> RowSource:
        """A snapshot of the shape's rows recorded at `position` that sees every
        transaction up to it."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            source = await self._open_live(position)
            stamp = source.cursor.snapshot
            if stamp is not None and await sees_through(
                self._retention, position, stamp, self._tailer.recent
            ):
                return source
            await source.close()
            await asyncio.sleep(RETRY_S)
        raise GatewayError(f"no snapshot saw the feed up to {position}; subscribe again")

    def _catch_up_router(self) -> CatchUpRouter:
        if self._resume is None:
            raise GatewayError("a catch-up without a resume")
        return self._resume


class ResumeRouter:
    """A resume's catch-up routing: with the sets as they are now, as long as that is
    exact (see the module docstring); else one refetch."""

    def __init__(
        self,
        session: RelationalSession,
        sets: SetRouter[Any],
        max_changes: int | None,
        client: ClientBinding | None = None,
    ) -> None:
        shape = session.shape
        self._session = session
        self._registry = sets.registry
        self._sets = sets
        self._inner = walk_sets(shape.inner_sets)
        self._keys = tuple(inner.key for inner in self._inner)
        self._versions = sets.versions(self._keys)
        index: RoutingIndex[RelationalSession] = RoutingIndex(sets=sets.registry)
        index.add(shape, session)
        bound = {} if client is None else {client.client_id: {session: client.owner}}
        self._assembler = TxAssembler(
            index, lambda table: (session,) if table == shape.table else (), max_changes,
            bound,
        )

    def route(self, entry: FeedEntry) -> Mapping[Any, RoutedTx] | None:
        stale = any(self._touches(change) for change in entry.changes)
        routed = None if stale else self._assembler.add(entry)
        if stale or self._sets.versions(self._keys) != self._versions:
            return {self._session: RoutedTx(entry.id, entry.lsn, entry.xid, 0.0, (), True)}
        if routed is None:
            return None
        confirmed = self._assembler.confirmed
        return {
            listener: RoutedTx(entry.id, entry.lsn, entry.xid, 0.0, tuple(r.changes), r.refetch,
                               confirmed=confirmed.get(listener))
            for listener, r in routed.items()
        }

    def _touches(self, change: Change) -> bool:
        """Whether an inner-table change may have changed one of the sets."""
        for inner in self._inner:
            if change.table != inner.table:
                continue
            if change.op == "truncate":
                return True
            old = change.old
            old_known = old is not None and any(c not in inner.primary_key for c in old)
            if change.op != "insert" and not old_known:
                return True
            for image in (old, change.new):
                if image is not None and inner.matches(image, self._registry):
                    return True
        return False
