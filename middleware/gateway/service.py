"""The sync service of one gateway process: shared by the strawberry and graphene schemas.

It owns the feed reader and tailer, the snapshot pool, the catalog and the
policies, and turns `sync(query, params, cursor)` plus the caller's claims into
a `SyncSession`. `start()` / `stop()` run from the ASGI lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis.asyncio
from psycopg_pool import AsyncConnectionPool

from pgsift.middleware.catalog import load_catalog, require_replica_identity
from pgsift.middleware.errors import ConfigError, GatewayError
from pgsift.middleware.feed.reader import AsyncFeedReader
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.dump_source import DumpSource
from pgsift.middleware.gateway.fanout import FeedObserver, FeedTailer, SendBudget
from pgsift.middleware.gateway.messages import SyncMessage
from pgsift.middleware.gateway.metrics import GatewayMetrics
from pgsift.middleware.gateway.session import SyncSession
from pgsift.middleware.gateway.snapshot import snapshot_pool
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import QueryError
from pgsift.subscriptions.policy import Policy, policies_from_config
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

# A query naming an unknown table re-reads the catalog at most this often.
CATALOG_RETRY_S = 1.0
# Redis connections shared by the sessions of one process (snapshot positions, catch-up).
REDIS_CONNECTIONS = 32


def database_name(database_url: str) -> str:
    """The dbname of a Postgres URL or conninfo string (the feed's key)."""
    name = psycopg.conninfo.conninfo_to_dict(database_url).get("dbname")
    if not name:
        name = urlsplit(database_url).path.lstrip("/")
    if not name:
        raise ConfigError(f"database URL {database_url!r} names no database")
    return str(name)


class SyncService:
    """Everything a `sync` subscription needs, for one gateway process."""

    def __init__(
        self,
        settings: Settings,
        *,
        loader: FeedObserver | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        if not settings.database_url or not settings.redis_url:
            raise ConfigError("the gateway needs database_url and redis_url")
        self.settings = settings
        self.database_url: str = settings.database_url
        self.metrics = metrics or GatewayMetrics()
        self.policies: dict[str, Policy] = policies_from_config(settings.policies)
        database = database_name(self.database_url)
        # Sessions share a bounded pool that waits for a free connection (a thousand
        # subscriptions starting at once must not open a thousand); the tailer's
        # blocking XREAD has a client of its own, so sessions can never starve it.
        pool: redis.asyncio.BlockingConnectionPool[Any]
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=None
        )
        self._redis_pool = pool
        self.reader = AsyncFeedReader(redis.asyncio.Redis(connection_pool=pool), database)
        self.retention = AsyncFeedRetention.for_database(self.reader.client, database)
        self._tail_reader = AsyncFeedReader.from_url(settings.redis_url, database)
        self.tailer = FeedTailer(
            self._tail_reader,
            loader=loader,
            metrics=self.metrics,
            on_schema_change=self._schema_changed,
            retention=self.retention,
            max_tx_changes=settings.gateway_max_tx_changes,
        )
        self.pool: AsyncConnectionPool[Any] = snapshot_pool(
            self.database_url,
            max_size=settings.gateway_snapshot_connections,
            wait_s=settings.gateway_snapshot_wait_s,
            statement_timeout_s=settings.gateway_snapshot_statement_timeout_s,
            idle_timeout_s=settings.gateway_snapshot_idle_timeout_s,
        )
        self.catalog: Catalog | None = None
        # Fresh bootstrap dumps, served instead of a snapshot query when there is one.
        self.dumps: DumpSource | None = (
            DumpSource(settings, database, self.reader) if settings.gateway_use_dumps else None
        )
        # Called with each newly read catalog (the batch loader follows schema changes).
        self.catalog_listeners: list[Callable[[Catalog], None]] = []
        self._catalog_read_at = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._tail_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.policies:
            log.warning(
                "NO [policies] CONFIGURED: every client let in can read every row and column "
                'of every table; add [policies."schema.table"] (columns, row) to pgsift.toml'
            )
        await self.pool.open()
        await self.refresh_catalog()
        await self.tailer.start()
        self._tail_task = asyncio.create_task(self.tailer.run(), name="pgsift-feed-tailer")

    async def stop(self) -> None:
        tasks = [t for t in (self._tail_task, self._refresh) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pool.close()
        await self.reader.close()
        await self._redis_pool.disconnect()
        await self._tail_reader.close()
        if self.dumps is not None:
            self.dumps.close()

    async def refresh_catalog(self) -> None:
        self._catalog_read_at = time.monotonic()
        self.catalog = catalog = await asyncio.to_thread(_read_catalog, self.database_url)
        for listener in self.catalog_listeners:
            listener(catalog)

    async def ready(self) -> bool:
        """Connected to Postgres and Redis, and tailing the feed."""
        if self._tail_task is None or self._tail_task.done() or not self.tailer.ready:
            return False
        try:
            async with self.pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            await self.reader.client.ping()
        except Exception:
            return False
        return True

    def budget(self) -> SendBudget:
        """A send budget for one connection."""
        return SendBudget(self.settings.gateway_send_queue)

    async def shape(self, query: str, params: Any, claims: Mapping[str, Any]) -> Shape:
        """Parse `query` for this caller; QueryError / PolicyError go to the client."""
        if params is None:
            params = []
        if not isinstance(params, list):
            raise QueryError("params must be a JSON array (one value per $n)")
        limits = self.settings
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > limits.gateway_max_query_bytes:
            raise QueryError(
                f"query is {size} bytes; at most {limits.gateway_max_query_bytes} are allowed "
                "(gateway_max_query_bytes)"
            )
        if len(params) > limits.gateway_max_params:
            raise QueryError(
                f"{len(params)} params; at most {limits.gateway_max_params} are allowed "
                "(gateway_max_params)"
            )
        if self._refresh is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._refresh)
        if self.catalog is None:
            await self.refresh_catalog()
        # Parsed in a worker thread: a big query must not stall the feed tailer.
        try:
            return await asyncio.to_thread(self._parse, query, params, claims)
        except QueryError:
            # A table created since the catalog was read: look once more.
            if time.monotonic() - self._catalog_read_at < CATALOG_RETRY_S:
                raise
            await self.refresh_catalog()
            return await asyncio.to_thread(self._parse, query, params, claims)

    def _parse(self, query: str, params: list[Any], claims: Mapping[str, Any]) -> Shape:
        if self.catalog is None:
            raise GatewayError("the catalog of the database could not be read")
        shape = Shape.parse(
            query, params=params, catalog=self.catalog, claims=dict(claims), policies=self.policies
        )
        require_replica_identity(shape, self.catalog, self.policies)
        if shape.inner_sets:
            # Rows moving in and out as inner sets change are the next step (docs/relational.md).
            raise QueryError(
                "subscriptions that read an inner select (IN (SELECT ...) or EXISTS, in the "
                "query or in its table's policy) are not served live yet; GET /v1/bootstrap "
                "reads them",
                sql=query,
            )
        return shape

    async def sync(
        self,
        query: str,
        params: Any,
        cursor: str | None,
        claims: Mapping[str, Any],
        budget: SendBudget,
    ) -> AsyncIterator[SyncMessage]:
        """The messages of one subscription; errors before the first message are the
        caller's (bad query, forbidden column, bad cursor)."""
        if self._tail_task is None:
            raise GatewayError("the gateway is not started")
        shape = await self.shape(query, params, claims)
        dump = None
        if cursor is None and self.dumps is not None and self.catalog is not None:
            try:
                dump = await self.dumps.find(shape, self.catalog)
            except Exception:
                log.exception("looking for a dump of %r failed; reading Postgres", shape)
        session = SyncSession(
            shape=shape,
            cursor=cursor,
            reader=self.reader,
            retention=self.retention,
            tailer=self.tailer,
            pool=self.pool,
            budget=budget,
            max_message_bytes=self.settings.gateway_max_message_bytes,
            metrics=self.metrics,
            dump=dump,
        )
        return session.messages()

    def _schema_changed(self, tables: tuple[str, ...]) -> None:
        log.info("schema of %s changed; re-reading the catalog", ", ".join(tables))
        self._refresh = asyncio.get_running_loop().create_task(self.refresh_catalog())


def _read_catalog(database_url: str) -> Catalog:
    with psycopg.connect(database_url) as conn:
        catalog: Catalog = load_catalog(conn)
        return catalog
