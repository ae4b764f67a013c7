"""The one snapshot taker: rows read in one transaction, stamped with the snapshot they saw.

    async with take_snapshot(conn) as read:         # REPEATABLE READ READ ONLY
        read.stamp                                  # pg_current_snapshot(), its first statement
        async for rows in read.rows(sql, params):   # a server-side cursor, FETCH_ROWS a time
            ...

The stamp says which transactions the rows include, so a feed replay that
follows can skip exactly those (`Snapshot.visible`). Whoever needs the rows
also records the feed position *before* taking the snapshot (see
`pgsift.middleware.bootstrap.sources`).

Connections come from `snapshot_pool` (the gateway's, shared by its
subscriptions and live `/v1/bootstrap` responses through `SnapshotConnections`,
`connections.py`: a snapshot that finds no free connection within its wait
fails) or `snapshot_connection` (one of its own: a dump build, one per worker).
Both read values as capture decodes them (`pgtypes`).
A client that reads slowly keeps its snapshot's connection (and transaction)
open, so pooled connections carry `statement_timeout` and
`idle_in_transaction_session_timeout`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.pgpool import LivePool
from pgsift.middleware.pgtypes import configure_async

FETCH_ROWS = 1000
CURSOR = "pgsift_snapshot"
STAMP = "SELECT pg_current_snapshot()::text"


def snapshot_pool(
    database_url: str,
    *,
    max_size: int,
    wait_s: float = 30.0,
    statement_timeout_s: float = 60.0,
    idle_timeout_s: float = 60.0,
) -> AsyncConnectionPool[Any]:
    """An unopened pool of read-only REPEATABLE READ connections for snapshots.

    A snapshot waits at most `wait_s` for a connection; Postgres ends a statement
    after `statement_timeout_s` and a transaction left idle (a slow reader's) after
    `idle_timeout_s` (0: no limit, as in Postgres).
    """
    timeouts = {
        "statement_timeout": f"{int(statement_timeout_s * 1000)}ms",
        "idle_in_transaction_session_timeout": f"{int(idle_timeout_s * 1000)}ms",
    }

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.set_autocommit(True)
        for name, value in timeouts.items():
            await conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        await _for_snapshots(conn)

    # Idle connections die with a Postgres restart: LivePool checks before lending one out.
    return LivePool(
        database_url,
        min_size=1,
        max_size=max_size,
        configure=configure,
        open=False,
        timeout=wait_s,
    )


async def snapshot_connection(database_url: str) -> psycopg.AsyncConnection[Any]:
    """A connection of its own for one snapshot (close it when done)."""
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        await _for_snapshots(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _for_snapshots(conn: psycopg.AsyncConnection[Any]) -> None:
    await configure_async(conn)  # values as capture decodes them, TimeZone UTC
    await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """An open snapshot transaction: its stamp, and the rows of any query in it."""

    conn: psycopg.AsyncConnection[Any]
    stamp: Snapshot
    taken_at: float  # Unix time

    async def rows(
        self, sql: str, params: Sequence[Any], batch: int = FETCH_ROWS
    ) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """The query's rows, `batch` per round trip (never an empty batch).

        A plain DECLARE/FETCH, not psycopg's named cursor: the cursor ends with the
        transaction, and there is no client object left to warn when a connection
        breaks mid-read.
        """
        async with self.conn.cursor() as cursor:
            await cursor.execute(f"DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}", params)
            while True:
                await cursor.execute(f"FETCH {batch} FROM {CURSOR}")
                rows = await cursor.fetchall()
                if rows:
                    yield rows
                if len(rows) < batch:
                    await cursor.execute(f"CLOSE {CURSOR}")
                    return

    async def first(self, sql: str, params: Sequence[Any], limit: int) -> list[tuple[Any, ...]]:
        """At most `limit` of the query's rows, in one round trip (no cursor)."""
        cursor = await self.conn.execute(
            f"SELECT * FROM ({sql}) AS pgsift_rows LIMIT {int(limit)}", params
        )
        return await cursor.fetchall()

    async def first_of_each(
        self, queries: Sequence[tuple[str, Sequence[Any]]], limit: int
    ) -> tuple[list[list[tuple[Any, ...]]], Exception | None]:
        """At most `limit` rows of each query, all in one round trip (a pipeline): the
        rows of the queries that ran, in order, and the error of the one that failed
        (the transaction is aborted then: the queries after it did not run)."""
        cursors = []
        error: Exception | None = None
        try:
            async with self.conn.pipeline() as pipeline:
                for sql, params in queries:
                    cursor = self.conn.cursor()
                    cursors.append(cursor)
                    await cursor.execute(
                        f"SELECT * FROM ({sql}) AS pgsift_rows LIMIT {int(limit)}", params
                    )
                await pipeline.sync()
        except psycopg.Error as exc:
            error = exc
        results: list[list[tuple[Any, ...]]] = []
        for cursor in cursors:
            if cursor.pgresult is None:
                break  # the one that failed, or one after it: no result
            try:
                results.append(await cursor.fetchall())
            except psycopg.Error as exc:
                error = error or exc
                break
        if error is None and len(results) < len(queries):
            error = psycopg.OperationalError("the pipeline ended before every query ran")
        return results, error

    async def estimate_rows(self, sql: str, params: Sequence[Any]) -> int:
        """The planner's row estimate (for progress and ETAs; no scan)."""
        cursor = await self.conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        explained = await cursor.fetchone()
        plan: Any = explained[0] if explained else None
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"]) if plan else 0


@asynccontextmanager
async def take_snapshot(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[SnapshotRead]:
    """A REPEATABLE READ READ ONLY transaction on `conn` whose first statement takes the
    stamp; it ends (and its cursors with it) when the block does."""
    async with conn.transaction():
        row = await (await conn.execute(STAMP)).fetchone()
        yield SnapshotRead(conn, Snapshot.parse(str(row[0] if row else "")), time.time())
