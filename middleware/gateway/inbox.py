"""A subscription's bounded queue at the feed tailer, and its connection's shared budget.

The tailer (`fanout.FeedTailer`) offers each routed transaction to the inbox of
every subscription it touches; the session takes them out. All subscriptions of
one connection draw on one `SendBudget`, so a slow client holds a bounded number
of transactions however many subscriptions it opens: past it, the inbox is
overflowed and the subscription ends with `mustRefetch`.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pgsift.middleware.gateway.reassembly import RoutedTx
from pgsift.subscriptions.shape import Shape


class SendBudget:
    """How many transactions may wait for one connection, across its subscriptions."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0


class Inbox:
    """One subscription's queue at the tailer; the listener registered in the index.

    There is one per subscription, so it holds only what it must: its queue exists
    while transactions wait in it, and a waiting reader is one future (not an Event,
    whose own deque of waiters would outweigh the rest)."""

    __slots__ = ("_queue", "_waiter", "after_lsn", "budget", "closed", "overflowed", "shape")

    def __init__(self, shape: Shape, budget: SendBudget, after_lsn: int) -> None:
        self.shape = shape
        self.budget = budget
        # Transactions at or below this LSN are the session's catch-up, not ours.
        self.after_lsn = after_lsn
        self.overflowed = False
        self.closed = False
        self._queue: deque[RoutedTx] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, tx: RoutedTx) -> bool:
        """Queue `tx`; False (and overflowed from now on) when the budget is spent."""
        if self.closed:
            return True  # unsubscribed while its transaction was being routed: drop it
        if self.overflowed:
            return False
        if self.budget.used >= self.budget.capacity:
            self.overflow()
            return False
        if self._queue is None:
            self._queue = deque()
        self._queue.append(tx)
        self.budget.used += 1
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> RoutedTx | None:
        """The next transaction, or None once overflowed."""
        while not self._queue and not self.overflowed:
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if self.overflowed or self._queue is None:
            return None
        self.budget.used -= 1
        tx = self._queue.popleft()
        if not self._queue:
            self._queue = None  # an empty deque still holds a block of 64 slots
        return tx

    def drain(self) -> list[RoutedTx]:
        """Every queued transaction at once (a move splices those its snapshot saw)."""
        queued = list(self._queue or ())
        self._queue = None
        self.budget.used -= len(queued)
        return queued

    def overflow(self) -> None:
        """From now on the subscription can only end with `mustRefetch`."""
        if self.closed or self.overflowed:
            return
        self.overflowed = True
        self.budget.used -= len(self._queue or ())
        self._queue = None
        self._wake()

    def release(self) -> None:
        self.closed = True
        self.budget.used -= len(self._queue or ())
        self._queue = None
