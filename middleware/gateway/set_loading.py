"""Attaching a relational subscription at the tailer: its inner sets loaded, then its inbox.

A subscription whose shape reads inner sets cannot be registered at just any
moment: the sets must be exact at the position where its inbox starts. So the
feed tailer serves these requests itself, between two transactions (no chunk
of a transaction routed without its last), at its position `p`:

1. `registry.acquire(shape.inner_sets)` gives the sets nobody holds yet, for
   every request waiting at `p` (they are served together).
2. Those are read with one `LiveRows` (the bootstrap seam) on a connection of
   the tailer's own (sessions cannot exhaust it), recorded at `p`: one
   snapshot for all the waiting requests, not one each (10,000 subscriptions
   starting at once were 10,000 snapshots, each checked with `sees_through`).
   A snapshot that misses a transaction at or below `p` (visibility lags the
   commit record by microseconds: see `session`) is retaken, up to
   `LOAD_ATTEMPTS` times. The mirrors nested sets read come first
   (`registry.needed_mirrors`), then each set, deepest first (`registry.load`;
   a request's sets, or an earlier request's, come before those reading
   them); a request with a set past the memory bound fails with
   `SetBoundError`, the others attach.
3. The sets become *pending* with the snapshot's stamp: the tailer does not
   apply to them again the transactions after `p` the snapshot saw
   (`SetRouter.add_pending`).
4. The inbox is created at `p` and the shape registered: every transaction
   after `p` reaches it, routed with exact sets.

While the tailer loads, it delivers nothing; loads are one indexed query per
new set. A set already held by another subscription costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg

from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.replay import sees_through
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.subscriptions.inner import InnerSet, walk_sets
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

LOAD_ATTEMPTS = 200
LOAD_RETRY_S = 0.01

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]
T = TypeVar("T")


class SetBoundError(GatewayError):
    """The subscription's inner sets would pass `relational_max_set_bytes`."""


@dataclass(slots=True)
class _Request(Generic[T]):
    shape: Shape
    make: Callable[[], T]
    undo: Callable[[T], None]
    done: asyncio.Future[T] = field(init=False)

    def __post_init__(self) -> None:
        self.done = asyncio.get_running_loop().create_future()


class SetLoads(Generic[T]):
    """Requests to attach relational subscriptions, served by the tailer between
    transactions (see the module docstring)."""

    def __init__(
        self, router: SetRouter[Any], connect: Connect, retention: AsyncFeedRetention
    ) -> None:
        self.router = router
        self._connect = connect
        self._retention = retention
        self._requests: deque[_Request[T]] = deque()
        self.wake = asyncio.Event()

    @property
    def pending(self) -> bool:
        return bool(self._requests)

    async def request(
        self, shape: Shape, make: Callable[[], T], undo: Callable[[T], None]
    ) -> T:
        """Wait for the tailer to load `shape`'s sets and call `make` (which registers
        the listener) at a transaction boundary; its result. `undo` unregisters it if
        the caller went away meanwhile."""
        request: _Request[T] = _Request(shape, make, undo)
        self._requests.append(request)
        self.wake.set()
        try:
            return await request.done
        except asyncio.CancelledError:
            if request in self._requests:
                self._requests.remove(request)
            raise

    def fail_all(self, error: BaseException) -> None:
        """The tailer stopped: no request will be served."""
        while self._requests:
            request = self._requests.popleft()
            if not request.done.done():
                request.done.set_exception(error)

    async def while_reading(
        self, reading: Awaitable[list[FeedEntry]], boundary: Callable[[], FeedPosition | None]
    ) -> list[FeedEntry]:
        """Await the tailer's next `reading` of the feed, serving requests meanwhile at
        `boundary()` (the tailer's position, None mid-transaction)."""
        read = asyncio.ensure_future(reading)
        try:
            while not read.done():
                await self.serve_at(boundary())
                woken = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait({read, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
            return read.result()
        finally:
            if not read.done():
                read.cancel()

    async def serve_at(self, position: FeedPosition | None) -> None:
        """Serve every waiting request at `position`: a transaction boundary (None: not
        at one; they wait)."""
        # Cleared whenever nothing can be served: a `wake` left set would make
        # `while_reading` spin (wake.wait() done at once) until the read completes,
        # on every read (40% of a core with 100 idle subscriptions).
        self.wake.clear()
        if position is None or not self._requests:
            return
        while self._requests:
            waiting = [r for r in self._requests if not r.done.done()]
            self._requests.clear()
            await self._attach_all(waiting, position)

    async def _attach_all(self, requests: list[_Request[T]], position: FeedPosition) -> None:
        """Attach every waiting request at `position`, their new sets read in one
        snapshot (one `LiveRows`: 10,000 subscriptions starting at once are not 10,000
        snapshots, each a round of `sees_through`)."""
        registry = self.router.registry
        acquired = [(request, registry.acquire(request.shape.inner_sets)) for request in requests]
        needed = tuple(inner for _, sets in acquired for inner in sets)
        try:
            if needed:
                await self._load(needed, position)
        except BaseException as exc:
            for request, _ in acquired:
                registry.release(request.shape.inner_sets)
                if isinstance(exc, Exception) and not request.done.done():
                    request.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled: the tailer fails every request (`fail_all`)
            return
        for request, _ in acquired:
            sets = request.shape.inner_sets
            try:
                if not all(registry.materialized(inner.key) for inner in walk_sets(sets)):
                    raise SetBoundError(
                        "the inner sets of this subscription would pass the gateway's "
                        "memory bound (relational_max_set_bytes)"
                    )
                result = request.make()
            except Exception as exc:
                registry.release(sets)
                if not request.done.done():
                    request.done.set_exception(exc)
                continue
            if request.done.done():  # the session went away meanwhile
                request.undo(result)
                continue
            request.done.set_result(result)

    async def _load(self, needed: tuple[InnerSet, ...], position: FeedPosition) -> None:
        registry = self.router.registry
        for _ in range(LOAD_ATTEMPTS):
            first = needed[0]
            sql, params = first.to_sql()
            source = await LiveRows.open(
                self._connect(), position, RowQuery(sql, tuple(params), first.wire)
            )
            try:
                stamp = source.cursor.snapshot
                assert stamp is not None  # a live source always has one
                if not await sees_through(self._retention, position, stamp):
                    await asyncio.sleep(LOAD_RETRY_S)
                    continue
                # The mirrors of the tables nested sets read, then the sets (`mirror`).
                mirrors = registry.needed_mirrors(needed)
                for mirror in mirrors:
                    rows = await _rows(source, mirror.sql(), [], mirror.columns)
                    registry.load_mirror(mirror, rows)  # False: past the bound, as a set
                for inner in needed:
                    sql, params = inner.to_sql()
                    rows = await _rows(source, sql, params, inner.fetched)
                    # False: past the bound; the requests reading it fail (`_attach_all`).
                    registry.load(inner, rows)
                loaded = [inner.key for inner in needed if registry.materialized(inner.key)]
                loaded += [m.key for m in mirrors if registry.materialized(m.key)]
                self.router.add_pending(loaded, stamp, source.read.taken_at)
                return
            finally:
                await source.close()
        raise GatewayError(
            f"no snapshot saw the feed up to {position} after {LOAD_ATTEMPTS} attempts; "
            "subscribe again"
        )


async def _rows(
    source: LiveRows, sql: str, params: Sequence[Any], columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """A statement's rows in `source`'s snapshot, as dicts by `columns`."""
    return [
        dict(zip(columns, row, strict=True))
        async for batch in source.statement(sql, params)
        for row in batch
    ]
