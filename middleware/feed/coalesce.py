"""One read shared by every caller waiting for it, each read issued after its callers asked.

Twenty thousand subscriptions starting at once each read the feed's bounds
(before the snapshot, for the dump, for the retention check); one Redis round
trip per call kept the sessions' connection pool busy for longer than its
wait bound, and subscriptions failed. A `Coalesced` read runs at most one call
at a time: callers that ask while a call is under way share the *next* call,
which starts when that one ends. So every caller gets an answer read after it
asked (what checking a position against a trim needs: an answer read before
the question could miss the trim), and a thousand callers cost one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    """`await coalesced()`: the result of a call of `fetch` issued after this call."""

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._next: asyncio.Future[T] | None = None  # the callers of the next call
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self) -> T:
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            # Nobody may be left waiting on an error no caller retrieved (all cancelled).
            future.add_done_callback(_retrieve)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # Shielded: a caller that is cancelled does not cancel the others' call.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while (future := self._next) is not None:
            self._next = None
            try:
                result = await self._fetch()
            except Exception as exc:
                future.set_exception(exc)
            except BaseException:
                future.cancel()
                if self._next is not None:
                    self._next.cancel()
                    self._next = None
                raise
            else:
                future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
