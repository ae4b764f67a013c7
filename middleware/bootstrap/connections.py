"""The one bounded set of Postgres connections a gateway process reads snapshots on.

Every snapshot of a gateway - a `sync` subscription's, a live `GET /v1/bootstrap`'s -
takes its connection here, so the number of backends one gateway can hold in a
snapshot transaction is `gateway_snapshot_connections`, whatever clients do:

    connections = SnapshotConnections.from_settings(settings)
    await connections.open()
    async with connections.connection(timeout=2.0) as conn:   # PoolTimeout past it
        ...
    connections.problem()          # /healthz: None, or why every connection is busy

A subscription waits up to `gateway_snapshot_wait_s` for one (a websocket
client waits anyway); a bootstrap waits `bootstrap_wait_s` while every
connection is lent out, then gets a 503 with `Retry-After` (while the pool is
only opening a connection it waits for that, as a subscription would). The
connections carry `statement_timeout` and
`idle_in_transaction_session_timeout` (`snapshot_pool`), a last resort behind
the bootstrap's write timeout. Every connection lent out is counted here, so
`/healthz` can tell when all of them have been busy for longer than
`gateway_snapshot_busy_s`: the gateway then cannot start a snapshot, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgsift.middleware.bootstrap.snapshot import snapshot_pool
from pgsift.middleware.settings import Settings


class SnapshotPool(Protocol):
    """Where a snapshot gets its connection: `SnapshotConnections`, or any psycopg pool."""

    @property
    def timeout(self) -> float:
        """The default wait for a free connection, in seconds."""
        ...

    def connection(
        self, timeout: float | None = None
    ) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


class SnapshotConnections:
    """A gateway's snapshot pool, counting what is lent out; see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, busy_after_s: float) -> None:
        self.pool = pool
        self.size = pool.max_size
        self.busy_after_s = busy_after_s
        self.in_use = 0
        self._growing = 0  # callers waiting for a connection the pool is still opening
        self._busy_since: float | None = None  # monotonic; set while all are lent out
        self._opening: asyncio.Future[None] | None = None

    @classmethod
    def from_settings(cls, database_url: str, settings: Settings) -> SnapshotConnections:
        pool = snapshot_pool(
            database_url,
            max_size=settings.gateway_snapshot_connections,
            wait_s=settings.gateway_snapshot_wait_s,
            statement_timeout_s=settings.gateway_snapshot_statement_timeout_s,
            idle_timeout_s=settings.gateway_snapshot_idle_timeout_s,
        )
        return cls(pool, busy_after_s=settings.gateway_snapshot_busy_s)

    @property
    def timeout(self) -> float:
        return float(self.pool.timeout)

    async def open(self) -> None:
        """Open the pool; idempotent, and callers that come while it opens wait for it."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self.pool.open())
        await asyncio.shield(self._opening)

    async def close(self) -> None:
        if self._opening is not None:
            self._opening = None
            await self.pool.close()

    @asynccontextmanager
    async def connection(
        self, timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one snapshot, waiting at most `timeout` (default: the pool's)
        while every connection is lent out; `psycopg_pool.PoolTimeout` when none came
        free. Back to the pool on exit (a transaction left open is rolled back there)."""
        conn = await self._checkout(timeout)
        self._lend(+1)
        try:
            yield conn
        finally:
            self._lend(-1)
            await self.pool.putconn(conn)

    async def _checkout(self, timeout: float | None) -> psycopg.AsyncConnection[Any]:
        conn: psycopg.AsyncConnection[Any]
        try:
            conn = await self.pool.getconn(timeout)
            return conn
        except PoolTimeout:
            # Not every connection is lent out: the pool is still opening the one this
            # caller waits for (slow on a busy host), so it is not busy, only growing.
            # Such a caller waits as long as any snapshot would; only as many of them as
            # there are connections left to open.
            if self.in_use + self._growing >= self.size:
                raise
        self._growing += 1
        try:
            conn = await self.pool.getconn(self.timeout)
            return conn
        finally:
            self._growing -= 1

    @property
    def exhausted(self) -> bool:
        """Every connection is lent out right now."""
        return self.in_use >= self.size

    def busy_for_s(self) -> float:
        """How long every connection has been lent out (0: one is free)."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def problem(self) -> str | None:
        """Why no snapshot can start (every connection busy past `busy_after_s`), or None."""
        busy = self.busy_for_s()
        if self._busy_since is None or busy < self.busy_after_s:
            return None
        waiting = self.pool.get_stats().get("requests_waiting", 0)
        return (
            f"all {self.size} snapshot connections busy for {busy:.0f} s "
            f"({waiting} waiting; gateway_snapshot_connections, gateway_snapshot_busy_s)"
        )

    def _lend(self, delta: int) -> None:
        self.in_use += delta
        if self.in_use >= self.size:
            if self._busy_since is None:
                self._busy_since = time.monotonic()
        else:
            self._busy_since = None
