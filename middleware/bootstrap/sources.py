"""`RowSource`: the one seam of every bootstrap, live from Postgres or from a dump.

A source gives the bootstrap's `cursor` (the feed position recorded before its
snapshot, and that snapshot: the replay that follows skips what the rows
already hold) and its rows in wire form (`pgsift.subscriptions.wire`): as rows
(`rows()`, for a `sync` subscription) or as the whole NDJSON response of `GET /v1/bootstrap`
(`body(encoding)`). `close()` ends it: a live source's snapshot transaction
ends, a dump's lease is released.

* `LiveRows.open(connection, position, query)` reads a statement (a shape's,
  an inner set's, or a move's region: `statement()` reads more in the same snapshot) in a snapshot
  (`pgsift.middleware.bootstrap.snapshot`) at a feed position its caller
  recorded *before* the call (`bounds().end` of a feed reader): every change
  missing from the rows is in the feed after it, and the stamp tells which
  ones after it the rows already hold. A dump build writes `LiveRows.lines()`.
* `DumpRows` reads a dump found and leased by `DumpFinder`
  (`find_dump_source`); blocking store reads run in threads, a batch at a time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import psycopg
from starlette.concurrency import iterate_in_threadpool

from pgsift.middleware.bootstrap.cursor import BootstrapCursor
from pgsift.middleware.bootstrap.encoder import RowEncoder
from pgsift.middleware.bootstrap.finder import DumpFinder
from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.bootstrap.snapshot import FETCH_ROWS, SnapshotRead, take_snapshot
from pgsift.middleware.dumps.encoding import Compressor, Encoding, compressed
from pgsift.middleware.dumps.format import end_line, header_line
from pgsift.middleware.dumps.read import DumpSnapshot
from pgsift.middleware.feed.bounds import FeedBounds
from pgsift.middleware.feed.position import FeedPosition
from pgsift.subscriptions.shape import Shape
from pgsift.subscriptions.wire import RowWire

ROWS_PER_READ = 1000  # dump rows decompressed per trip to a worker thread

Rows = list[dict[str, Any]]


class RowSource(Protocol):
    """Where a bootstrap's rows come from, and where the feed continues after them."""

    @property
    def kind(self) -> Literal["live", "dump"]: ...

    @property
    def cursor(self) -> BootstrapCursor: ...

    def rows(self) -> AsyncIterator[Rows]:
        """The rows with values in their wire form, in batches."""
        ...

    def body(self, encoding: Encoding) -> AsyncIterator[bytes]:
        """The NDJSON response (header, rows, end line) in `encoding`."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RowQuery:
    """A statement to bootstrap from: SQL, params, and its rows' columns with the
    encoders of their wire form (by column type)."""

    sql: str
    params: tuple[Any, ...]
    wire: RowWire

    @classmethod
    def of_shape(cls, shape: Shape) -> RowQuery:
        sql, params = shape.to_sql()
        return cls(sql, tuple(params), shape.wire)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.wire.columns


class LiveRows:
    """A statement's rows in an open snapshot, at a feed position recorded before it."""

    kind: Literal["live", "dump"] = "live"

    def __init__(
        self,
        read: SnapshotRead,
        position: FeedPosition,
        query: RowQuery,
        exits: AsyncExitStack,
        batch: int = FETCH_ROWS,
    ) -> None:
        self.read = read
        self.query = query
        self.cursor = BootstrapCursor(position, read.stamp)
        self._exits = exits
        self._batch = batch

    @classmethod
    async def open(
        cls,
        connection: AbstractAsyncContextManager[psycopg.AsyncConnection[Any]],
        position: FeedPosition,
        query: RowQuery,
        *,
        batch: int = FETCH_ROWS,
    ) -> LiveRows:
        """Take a snapshot on `connection` (entered here, left by `close`) for `query`'s
        rows; the feed continues them after `position`, recorded *before* this call."""
        exits = AsyncExitStack()
        try:
            conn = await exits.enter_async_context(connection)
            read = await exits.enter_async_context(take_snapshot(conn))
        except BaseException:
            await exits.aclose()
            raise
        return cls(read, position, query, exits, batch)

    # Each generator closes the one it reads (aclosing): a consumer that stops early
    # ends the whole chain at once, not whenever the garbage collector gets to it.

    async def rows(self) -> AsyncGenerator[Rows, None]:
        to_wire = self.query.wire.values
        async with aclosing(self._batches()) as batches:
            async for batch in batches:
                yield [to_wire(row) for row in batch]

    async def lines(self) -> AsyncGenerator[tuple[bytes, int], None]:
        """The rows as NDJSON row lines, a batch at a time, with their count."""
        encoder = RowEncoder(self.query.wire)
        async with aclosing(self._batches()) as batches:
            async for batch in batches:
                # Encoded in a thread: JSON for thousands of rows must not hold up the loop.
                yield await asyncio.to_thread(encoder.encode, batch), len(batch)

    async def body(self, encoding: Encoding) -> AsyncGenerator[bytes, None]:
        wire = self.query.wire
        compressor = Compressor(encoding)
        cursor = str(self.cursor)
        yield compressor.compress(header_line(wire.columns, wire.types, "live", cursor))
        count = 0
        async with aclosing(self.lines()) as batches:
            async for lines, rows in batches:
                count += rows
                out = compressor.compress(lines)
                if out:
                    yield out
        yield compressor.compress(end_line(count, cursor)) + compressor.finish()

    def statement(self, sql: str, params: Sequence[Any]) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Another statement's rows (typed, not wire form) in the same snapshot: the
        rows an inner-set change moves into or out of a subscription are read so, as
        are the inner sets themselves (`pgsift.middleware.gateway.moves`)."""
        return self.read.rows(sql, params, self._batch)

    async def close(self) -> None:
        await self._exits.aclose()

    def _batches(self) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        return self.read.rows(self.query.sql, self.query.params, self._batch)


class DumpRows:
    """A leased dump's rows (wire form, as stored) and where the feed continues after it."""

    kind: Literal["live", "dump"] = "dump"

    def __init__(self, finder: DumpFinder, dump: DumpSnapshot) -> None:
        self._finder = finder
        self.dump = dump
        self.cursor = dump.cursor

    async def rows(self) -> AsyncGenerator[Rows, None]:
        """The rows, decompressed in a worker thread a batch at a time."""
        rows: Iterator[dict[str, Any]] = self.dump.rows()
        while batch := await asyncio.to_thread(_take, rows):
            yield batch

    def body(self, encoding: Encoding) -> AsyncIterator[bytes]:
        """The stored response (a zstd body goes out as stored), read in worker threads."""
        if encoding == "zstd":
            return iterate_in_threadpool(self.dump.compressed())
        return iterate_in_threadpool(compressed(self.dump.ndjson(), encoding))

    async def close(self) -> None:
        await asyncio.to_thread(self._finder.release, self.dump)


async def find_dump_source(
    finder: DumpFinder, layout: ShapeLayout, feed: FeedBounds
) -> DumpRows | None:
    """A leased fresh dump of `layout`'s shape whose position `feed` continues, or None."""
    dump = await asyncio.to_thread(finder.find, layout, feed)
    return None if dump is None else DumpRows(finder, dump)


def _take(rows: Iterator[dict[str, Any]]) -> Rows:
    return list(itertools.islice(rows, ROWS_PER_READ))
