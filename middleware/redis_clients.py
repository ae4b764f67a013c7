"""Redis clients whose every wait is bounded: connecting, each reply, a free pooled connection.

redis-py waits forever by default: for a reply (no socket timeout) and, with a
`BlockingConnectionPool`, for a connection to come free (`timeout=None`). One
such wait in the gateway once stopped delivery for every client of a process,
so pgsift makes its clients here and nowhere else. A command that blocks on
purpose (`XREAD BLOCK`) must block for less than `REPLY_TIMEOUT_S`.

A `redis+cluster://host:port` (or `rediss+cluster://`) URL names a Redis
Cluster through one of its nodes: the client is then redis-py's cluster client,
which finds the others. It is handed out as a `redis.Redis` because it answers
the same commands for keys of one hash slot, and every key pgsift keeps for a
database carries the database as a hash tag (`pgsift.middleware.feed.keys`):
its scripts, MULTI and reads across several keys stay within one slot.
The cluster client's own failures that are no `redis.RedisError` (no node
reachable, a slot no node serves) come out as `redis.ConnectionError`, so
every caller retries them as it retries an unreachable Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import RedisClusterException

CONNECT_TIMEOUT_S = 5.0
# Longest wait for one reply; the feed is read with XREAD BLOCK of about a second.
REPLY_TIMEOUT_S = 10.0
# Longest wait for a free connection of a bounded pool.
POOL_WAIT_S = 10.0

# pgsift's URL schemes for a Redis Cluster -> the scheme of the node they name.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def node_url(url: str) -> str | None:
    """The plain URL of the node a `redis+cluster://` URL names; None for a plain Redis URL."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return None if plain is None else f"{plain}://{rest}"


def is_cluster(url: str) -> bool:
    return node_url(url) is not None


def async_redis(url: str, *, connections: int | None = None) -> redis.asyncio.Redis[bytes]:
    """An asyncio client; with `connections`, a pool of at most that many, waited for
    at most `POOL_WAIT_S` (then `redis.ConnectionError`)."""
    options: dict[str, Any] = {
        "socket_timeout": REPLY_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    node = node_url(url)
    if node is not None:
        cluster = _BoundedCluster.from_url(node, **{**options, "connections": connections})
        return cast("redis.asyncio.Redis[bytes]", cluster)
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
    options: dict[str, Any] = {
        "socket_timeout": REPLY_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    node = node_url(url)
    if node is not None:
        try:
            cluster = _Cluster.from_url(node, **options)
        except RedisClusterException as exc:
            raise _unreachable(exc) from exc
        return cast("redis.Redis[bytes]", cluster)
    client: redis.Redis[bytes] = redis.Redis.from_url(url, **options)
    return client


def _unreachable(exc: RedisClusterException) -> redis.ConnectionError:
    return redis.ConnectionError(f"Redis Cluster: {exc}")


class _Cluster(redis.cluster.RedisCluster):  # type: ignore[type-arg]
    """redis-py's cluster client, failing with `redis.RedisError`s only."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise _unreachable(exc) from exc


class _BoundedCluster(redis.asyncio.cluster.RedisCluster):  # type: ignore[type-arg]
    """redis-py's asyncio cluster client, its commands waiting at most `POOL_WAIT_S` for
    one of `connections`, as `BlockingConnectionPool` does (the cluster client's own
    bound, per node, fails at once instead of waiting), and failing with
    `redis.RedisError`s only."""

    def __init__(self, *, connections: int | None = None, **options: Any) -> None:
        if connections is not None:
            options["max_connections"] = connections
        super().__init__(**options)
        self._free = asyncio.Semaphore(connections) if connections is not None else None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._free is None:
            return await self._execute(*args, **kwargs)
        try:
            async with asyncio.timeout(POOL_WAIT_S):
                await self._free.acquire()
        except TimeoutError:
            raise redis.ConnectionError(
                f"no Redis Cluster connection came free within {POOL_WAIT_S:g} s"
            ) from None
        try:
            return await self._execute(*args, **kwargs)
        finally:
            self._free.release()

    async def _execute(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unreachable(exc) from exc
