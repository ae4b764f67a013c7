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
            self.overflow()
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

    def drain(self) -> list[RoutedTx]:
        """Every queued transaction at once (a move splices those its snapshot saw)."""
        queued = list(self._queue)
        self._queue.clear()
        self.budget.used -= len(queued)
        return queued

    def overflow(self) -> None:
        """From now on the subscription can only end with `mustRefetch`."""
        if self.closed or self.overflowed:
            return
        self.overflowed = True
        self.budget.used -= len(self._queue)
        self._queue.clear()
        self._wake.set()

    def release(self) -> None:
        self.closed = True
        self.budget.used -= len(self._queue)
        self._queue.clear()
