"""Consistent snapshots of a shape's rows, stamped with the Postgres snapshot they saw.

The snapshot transaction is `REPEATABLE READ READ ONLY`; `pg_current_snapshot()`
taken in it says which transactions its rows include, so the feed replay that
follows can skip exactly those (`Snapshot.visible`).

A client that reads slowly keeps its snapshot's connection (and transaction)
open, so the pool's connections carry `statement_timeout` and
`idle_in_transaction_session_timeout`, and a snapshot that finds no free
connection within the pool's timeout fails with a GatewayError ("busy").
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgsift.middleware.dumps.cursor import Snapshot
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.pgpool import LivePool
from pgsift.middleware.pgtypes import configure_async
from pgsift.subscriptions.shape import Shape

FETCH_ROWS = 1000
CURSOR = "pgsift_snapshot"


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
        await configure_async(conn)  # values as capture decodes them, TimeZone UTC
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)

    # Idle connections die with a Postgres restart: LivePool checks before lending one out.
    return LivePool(
        database_url,
        min_size=1,
        max_size=max_size,
        configure=configure,
        open=False,
        timeout=wait_s,
    )


@asynccontextmanager
async def shape_snapshot(
    pool: AsyncConnectionPool[Any], shape: Shape
) -> AsyncIterator[tuple[Snapshot, AsyncIterator[dict[str, Any]]]]:
    """The snapshot stamp and the shape's rows, streamed through a server-side cursor."""
    sql, params = shape.to_sql()
    try:
        async with pool.connection() as conn, conn.transaction():
            row = await (await conn.execute("SELECT pg_current_snapshot()::text")).fetchone()
            assert row is not None
            stamp = Snapshot.parse(row[0])
            # A plain DECLARE/FETCH, not psycopg's named cursor: the cursor ends with the
            # transaction, and there is no client object left to warn when a connection
            # breaks mid-read.
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(f"DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}", params)
                async with aclosing(_fetch_all(cursor)) as rows:
                    yield stamp, rows
    except PoolTimeout as exc:
        raise GatewayError(
            "the gateway is busy: no database connection for the snapshot came free within "
            f"{pool.timeout:g} s; subscribe again later"
        ) from exc
    except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout) as exc:
        raise GatewayError(
            "the snapshot could not be read to the end (too slow a reader, or the database "
            "went away); subscribe again"
        ) from exc


async def _fetch_all(
    cursor: psycopg.AsyncCursor[dict[str, Any]],
) -> AsyncGenerator[dict[str, Any], None]:
    """The declared cursor's rows, `FETCH_ROWS` per round trip."""
    while True:
        await cursor.execute(f"FETCH {FETCH_ROWS} FROM {CURSOR}")
        rows = await cursor.fetchall()
        for row in rows:
            yield row
        if len(rows) < FETCH_ROWS:
            return
