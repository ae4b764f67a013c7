"""Redis clients whose every wait is bounded: connecting, each reply, a free pooled connection.

redis-py waits forever by default: for a reply (no socket timeout) and, with a
`BlockingConnectionPool`, for a connection to come free (`timeout=None`). One
such wait in the gateway once stopped delivery for every client of a process,
so pgsift makes its clients here and nowhere else. A command that blocks on
purpose (`XREAD BLOCK`) must block for less than `REPLY_TIMEOUT_S`.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

CONNECT_TIMEOUT_S = 5.0
# Longest wait for one reply; the feed is read with XREAD BLOCK of about a second.
REPLY_TIMEOUT_S = 10.0
# Longest wait for a free connection of a bounded pool.
POOL_WAIT_S = 10.0


def async_redis(url: str, *, connections: int | None = None) -> redis.asyncio.Redis[bytes]:
    """An asyncio client; with `connections`, a pool of at most that many, waited for
    at most `POOL_WAIT_S` (then `redis.ConnectionError`)."""
    options: dict[str, Any] = {
        "socket_timeout": REPLY_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    if connections is None:
        client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(url, **options)
        return client
    pool: redis.asyncio.BlockingConnectionPool[Any]
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=POOL_WAIT_S, **options
    )
    # from_pool: closing the client disconnects its own pool too.
    pooled: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_pool(pool)  # type: ignore[attr-defined]
    return pooled


def sync_redis(url: str) -> redis.Redis[bytes]:
    """A blocking client (a pool that opens a connection per concurrent caller)."""
    client: redis.Redis[bytes] = redis.Redis.from_url(
        url, socket_timeout=REPLY_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
    )
    return client
