"""Postgres connection pools that never lend out a dead connection.

A Postgres restart (or a network cut, or an idle timeout on a proxy) kills every
idle connection of a pool at once. psycopg_pool's own `check=` finds each dead
one on checkout, but waits a backoff of one second and more before trying the
next: with eight dead connections, a caller waits past any sensible timeout
and `/healthz` stays red for tens of seconds. `LivePool` checks the same way and
tries the next connection at once; the pool replaces each one it throws away.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.abc import ACT

log = logging.getLogger(__name__)


class LivePool(AsyncConnectionPool[ACT]):
    """An `AsyncConnectionPool` whose every checkout (`connection()`, `getconn()`) is alive."""

    async def getconn(self, timeout: float | None = None) -> ACT:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(timeout=max(0.0, deadline - time.monotonic()))
            try:
                await self.check_connection(conn)
            except psycopg.Error as exc:
                log.info("pool %s: dropped a dead connection (%s)", self.name, str(exc).strip())
                # Closed, the pool counts it as lost and opens a replacement.
                await conn.close()
                await self.putconn(conn)
                if time.monotonic() >= deadline:
                    raise PoolTimeout(f"no live connection within {timeout} s") from exc
                continue
            return conn
