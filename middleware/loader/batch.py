"""The batching primitive: aiodataloader's DataLoader, given a time window.

aiodataloader batches the keys asked for within one turn of the event loop and
shares a key's future among everyone who asks while it is pending. The gateway
needs two things more, kept here and small: the keys of separate requests (which
arrive on different turns) share a batch when they come within `window_s`, or
as soon as `max_batch_size` keys are queued; and the future map holds only
loads in flight, so that a finished load is never served again from it - the
cache with feed invalidation lives in `cache.py`, per-caller filtering in
`loader.py`, neither of which DataLoader can do. `all_done` is how a caller
waits for its share of those futures without disturbing anyone else's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable, Iterator, MutableMapping, Sequence
from typing import Any, TypeVar, cast

from aiodataloader import DataLoader, Loader, dispatch_queue

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class InflightFutures(MutableMapping[K, "asyncio.Future[V]"]):
    """DataLoader's future map, holding a key only while its load is in flight."""

    def __init__(self) -> None:
        self._futures: dict[K, asyncio.Future[V]] = {}

    def __getitem__(self, key: K) -> asyncio.Future[V]:
        future = self._futures[key]
        if future.done():
            # Done callbacks run a loop turn later; until then a done future is not in flight.
            raise KeyError(key)
        return future

    def __setitem__(self, key: K, future: asyncio.Future[V]) -> None:
        self._futures[key] = future
        future.add_done_callback(lambda done: self._forget(key, done))

    def __delitem__(self, key: K) -> None:
        del self._futures[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._futures)

    def __len__(self) -> int:
        return len(self._futures)

    def _forget(self, key: K, future: asyncio.Future[V]) -> None:
        if not future.cancelled():
            # Every waiter may have timed out: mark the error seen so asyncio does not log it.
            future.exception()
        if self._futures.get(key) is future:
            del self._futures[key]


class WindowedDataLoader(DataLoader[K, V]):
    """A DataLoader whose batch closes `window_s` after its first key, or when full."""

    def __init__(
        self,
        batch_load_fn: Callable[[list[K]], Coroutine[Any, Any, Sequence[V | Exception]]],
        *,
        window_s: float,
        max_batch_size: int,
    ) -> None:
        """`batch_load_fn` returns one value per key, or an Exception that fails that key only
        (DataLoader's convention); raising fails the whole batch."""
        self.inflight: InflightFutures[K, V] = InflightFutures()
        super().__init__(
            cast(Any, batch_load_fn), max_batch_size=max_batch_size, cache_map=self.inflight
        )
        self._window_s = window_s
        self._timer: asyncio.TimerHandle | None = None

    def do_resolve_reject(self, key: K, future: asyncio.Future[V]) -> None:
        self._queue.append(Loader(key=key, future=future))
        if self.max_batch_size is not None and len(self._queue) >= self.max_batch_size:
            self.dispatch()
        elif self._timer is None:
            self._timer = self.loop.call_later(self._window_s, self.dispatch)

    def dispatch(self) -> None:
        """Send the queued keys now (one batch per `max_batch_size` keys)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            dispatch_queue(self)

    def fail_queued(self, error: Exception) -> None:
        """Reject every queued key with `error` without sending it (used on close)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, []
        for entry in queue:
            if not entry.future.done():
                entry.future.set_exception(error)


def all_done(futures: set[asyncio.Future[Any]]) -> asyncio.Future[None]:
    """A future of our own, done when all `futures` are.

    Cancelling it (on a timeout) leaves the futures other callers share
    untouched, as asyncio.wait would, at a fraction of its cost per call.
    """
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    remaining = len(futures)

    def one_done(_: asyncio.Future[Any]) -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining and not done.done():
            done.set_result(None)

    for future in futures:
        future.add_done_callback(one_done)
    return done
