"""The sync service of one gateway process: shared by the strawberry and graphene schemas.

It owns the feed reader and tailer, the watchdog, the feed's freshness (from
capture's heartbeat), the snapshot pool (`SnapshotConnections`, shared with
`GET /v1/bootstrap`), the catalog and the policies, and
turns `sync(query, params, cursor)` plus the caller's claims into a
`SyncSession`. `start()` / `stop()` run from the ASGI lifespan; the `probe_*`
methods are `/healthz` checks.

Redis connections are split by who waits on them: sessions share a bounded
pool (a thousand subscriptions starting at once must not open a thousand), the
tailer has a connection of its own and the monitoring (watchdog, heartbeat,
health probe) others, so no number of sessions can stall delivery or its
monitoring. Every wait is bounded (`pgsift.middleware.redis_clients`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from psycopg_pool import AsyncConnectionPool

from pgsift.middleware.bootstrap.connections import SnapshotConnections
from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.bootstrap.shared import SharedSnapshots
from pgsift.middleware.bootstrap.snapshot import snapshot_pool
from pgsift.middleware.bootstrap.sources import RowSource, find_dump_source
from pgsift.middleware.catalog import require_replica_identity
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.coalesce import Coalesced
from pgsift.middleware.feed.freshness import FeedFreshness
from pgsift.middleware.feed.heartbeat import HeartbeatReader
from pgsift.middleware.feed.reader import AsyncFeedReader
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.fanout import FeedObserver, FeedTailer
from pgsift.middleware.gateway.inbox import SendBudget
from pgsift.middleware.gateway.messages import SyncMessage, with_types
from pgsift.middleware.gateway.metrics import GatewayMetrics
from pgsift.middleware.gateway.relational_session import RelationalSession
from pgsift.middleware.gateway.schema_watch import SchemaWatch
from pgsift.middleware.gateway.session import SyncSession
from pgsift.middleware.gateway.shapes import ShapeCache, claims_named
from pgsift.middleware.gateway.watchdog import FeedWatchdog
from pgsift.middleware.mutations.confirmed import ClientBinding, read_confirmed
from pgsift.middleware.wiring import Wiring
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import QueryError
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

# A query naming an unknown table re-reads the catalog at most this often.
CATALOG_RETRY_S = 1.0
# Redis connections shared by the sessions of one process (snapshot positions, catch-up).
REDIS_CONNECTIONS = 32
# How long the set of shapes that have dumps is used before it is read again.
DUMP_SHAPES_TTL_S = 1.0
# A health probe waits at most this long for a snapshot connection.
PROBE_WAIT_S = 1.0
# Queries up to this size, with a few short scalar params, are parsed on the event loop;
# others (arrays of values, long texts) in a worker thread.
INLINE_PARSE_BYTES = 1024
INLINE_PARSE_PARAMS = 16
INLINE_PARSE_TEXT = 256


def _small(params: list[Any]) -> bool:
    return len(params) <= INLINE_PARSE_PARAMS and all(
        p is None or isinstance(p, (bool, int, float))
        or (isinstance(p, str) and len(p) <= INLINE_PARSE_TEXT)
        for p in params
    )


class SyncService:
    """Everything a `sync` subscription needs, for one gateway process."""

    def __init__(
        self,
        wiring: Wiring,
        *,
        loader: FeedObserver | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        settings = wiring.settings
        self.wiring = wiring
        self.settings = settings
        self.database_url = wiring.database_url
        self.metrics = metrics or GatewayMetrics()
        self.policies = wiring.policies
        database = wiring.database
        self.reader = AsyncFeedReader(wiring.async_redis(connections=REDIS_CONNECTIONS), database)
        self.retention = AsyncFeedRetention.for_database(self.reader.client, database)
        tail_client = wiring.async_redis(connections=1)
        self._tail_reader = AsyncFeedReader(tail_client, database)
        # The tailer's own connection, to load inner sets (no session can exhaust it).
        self.sets_pool: AsyncConnectionPool[Any] = snapshot_pool(
            self.database_url,
            max_size=1,
            wait_s=settings.gateway_snapshot_wait_s,
            statement_timeout_s=settings.gateway_snapshot_statement_timeout_s,
            idle_timeout_s=settings.gateway_snapshot_idle_timeout_s,
        )
        self.sets = SetRegistry(max_bytes=settings.relational_max_set_bytes)
        self.metrics.watch_sets(self.sets.stats)
        # Changed and new tables in the feed: re-read the catalog (the typed schema follows).
        self.schema_watch = SchemaWatch(self._schema_changed)
        self.tailer = FeedTailer(
            self._tail_reader,
            loader=loader,
            metrics=self.metrics,
            schema_watch=self.schema_watch,
            retention=AsyncFeedRetention.for_database(tail_client, database),
            max_tx_changes=settings.gateway_max_tx_changes,
            sets=self.sets,
            sets_connection=self.sets_pool.connection,
            sets_feed=self.retention,
        )
        # The watchdog, the heartbeat poll and the Redis health probe: one connection each.
        self._watch_client = wiring.async_redis(connections=3)
        self.watchdog = FeedWatchdog(
            self.tailer,
            AsyncFeedReader(self._watch_client, database),
            bound_s=settings.gateway_max_feed_lag_s,
            metrics=self.metrics,
        )
        # How fresh what the tailer delivered is, from capture's heartbeat (loader, /healthz).
        self.freshness = FeedFreshness(
            HeartbeatReader(self._watch_client, database),
            stale_after_s=settings.feed_stale_after_s,
            delivered=lambda: self.tailer.done_lsn,
        )
        self.metrics.watch_heartbeat(self.freshness.age_s)
        # The one bound on this process's snapshot backends: sessions and /v1/bootstrap.
        self.connections = SnapshotConnections.from_settings(self.database_url, settings)
        # Subscriptions that start together read their rows in shared snapshots.
        self.snapshots = SharedSnapshots(self.connections, self.retention)
        self.catalog: Catalog | None = None
        # Subscriptions to one shape (query, params, claims read) share one, parsed once.
        self.shapes = ShapeCache(read_claims=claims_named(self.policies))
        # Fresh bootstrap dumps, served instead of a snapshot query when there is one.
        self.dumps = wiring.dump_finder() if settings.gateway_use_dumps else None
        # The shapes that have dumps, as last read (`_may_have_dump`).
        self._dump_shapes: frozenset[str] = frozenset()
        self._dump_shapes_at = float("-inf")
        self._read_dump_shapes = Coalesced(self._fetch_dump_shapes)
        # Called with each newly read catalog (the batch loader follows schema changes).
        self.catalog_listeners: list[Callable[[Catalog], None]] = [self.schema_watch.use_catalog]
        self._refresh: asyncio.Task[None] | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._freshness_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.policies:
            log.warning(
                "NO [policies] CONFIGURED: every client let in can read every row and column "
                'of every table; add [policies."schema.table"] (columns, row) to pgsift.toml'
            )
        await self.connections.open()
        await self.sets_pool.open()
        await self.refresh_catalog()
        await self.tailer.start()
        self._tail_task = asyncio.create_task(self.tailer.run(), name="pgsift-feed-tailer")
        self._watch_task = asyncio.create_task(self.watchdog.run(), name="pgsift-feed-watchdog")
        self._freshness_task = asyncio.create_task(
            self.freshness.run(), name="pgsift-feed-freshness"
        )

    async def stop(self) -> None:
        running = (self._tail_task, self._watch_task, self._freshness_task, self._refresh)
        tasks = [t for t in running if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.snapshots.close()
        await self.connections.close()
        await self.sets_pool.close()
        await self.reader.close()
        await self._tail_reader.close()
        await self._watch_client.aclose()  # type: ignore[attr-defined]  # stubs predate it

    async def refresh_catalog(self) -> None:
        self.catalog = catalog = await asyncio.to_thread(self.wiring.catalog_source.refresh)
        for listener in self.catalog_listeners:
            listener(catalog)

    async def probe_postgres(self) -> str | None:
        """A snapshot connection answers (health check). With every one lent out, those
        are busy reading Postgres: `probe_snapshot_connections` says how long."""
        if self.connections.exhausted:
            return None
        async with self.connections.connection(timeout=PROBE_WAIT_S) as conn:
            await conn.execute("SELECT 1")
        return None

    async def probe_snapshot_connections(self) -> str | None:
        """Some snapshot connection came free within `gateway_snapshot_busy_s` (health
        check): else no subscription or bootstrap can start here."""
        return self.connections.problem()

    async def probe_redis(self) -> str | None:
        """Redis answers, on a connection no session can hold (health check)."""
        await self._watch_client.ping()
        return None

    async def probe_tailer(self) -> str | None:
        """The tailer runs and its last read of the feed succeeded (health check)."""
        if self._tail_task is None or self._tail_task.done() or self.tailer.stopped:
            return "the feed tailer is not running"
        if not self.tailer.ready:
            return f"the feed tailer cannot read the feed: {self.tailer.last_error}"
        return None

    async def probe_freshness(self) -> str | None:
        """This gateway has seen every transaction up to a few seconds ago, by capture's
        heartbeat (health check)."""
        return self.freshness.problem()

    def bind_client(self, client_id: Any, claims: Mapping[str, Any]) -> ClientBinding | None:
        """The client a connection speaks for (`clientId` of its `connection_init`): its
        subscriptions get that client's confirmations. None without a `clientId` or
        without `[mutators]` (no ledger to confirm from); MutationError when malformed."""
        if client_id is None or not self.settings.mutators:
            return None
        return ClientBinding.of(client_id, claims, self.settings.mutations_owner_claim)

    async def acknowledge(self, client: ClientBinding | None) -> dict[str, object] | None:
        """The `connection_ack` payload of a bound connection: where the client's ledger
        stands (`lastMutationId` 0 for a client whose mutations never ran)."""
        if client is None:
            return None
        payload: dict[str, object] = {"clientId": client.client_id}
        try:
            async with self.connections.connection() as conn:
                confirmed = await read_confirmed(conn, client, None)
        except Exception:
            # The stream's confirmations do not depend on it: ack without the position.
            log.exception("reading the ledger row of client %s failed", client.client_id)
            return payload
        payload["lastMutationId"] = 0
        if confirmed is not None:
            payload.update(confirmed.to_json())
        return payload

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
        try:
            return await self._parse_soon(query, params, claims, size)
        except QueryError:
            # A table created since the catalog was read: look once more.
            if time.monotonic() - self.wiring.catalog_source.read_at < CATALOG_RETRY_S:
                raise
            await self.refresh_catalog()
            return await self._parse_soon(query, params, claims, size)

    async def _parse_soon(
        self, query: str, params: list[Any], claims: Mapping[str, Any], size: int
    ) -> Shape:
        """A big query is parsed in a worker thread, so that it cannot stall the feed
        tailer; a small one (a tenth of a millisecond) right here, which costs less than
        the hop to a thread and back (20,000 subscribes spent more there than parsing).
        One parsed for the same query, params and claims before is taken as it is."""
        catalog = self.catalog
        key = self.shapes.key(query, params, claims) if catalog is not None else None
        if catalog is not None and (shape := self.shapes.get(catalog, key)) is not None:
            return shape
        if size <= INLINE_PARSE_BYTES and _small(params):
            shape = self._parse(query, params, claims)
        else:
            shape = await asyncio.to_thread(self._parse, query, params, claims)
        if catalog is not None:
            self.shapes.put(catalog, key, shape)
        return shape

    def _parse(self, query: str, params: list[Any], claims: Mapping[str, Any]) -> Shape:
        if self.catalog is None:
            raise GatewayError("the catalog of the database could not be read")
        shape = Shape.parse(
            query,
            params=params,
            catalog=self.catalog,
            claims=dict(claims),
            policies=self.policies,
            max_subquery_depth=self.settings.relational_max_subquery_depth,
        )
        require_replica_identity(shape, self.catalog, self.policies)
        return shape

    async def sync(
        self,
        query: str,
        params: Any,
        cursor: str | None,
        claims: Mapping[str, Any],
        budget: SendBudget,
        client: ClientBinding | None = None,
    ) -> AsyncIterator[SyncMessage]:
        """The messages of one subscription; errors before the first message are the
        caller's (bad query, forbidden column, bad cursor)."""
        if self._tail_task is None:
            raise GatewayError("the gateway is not started")
        shape = await self.shape(query, params, claims)
        dump: RowSource | None = None
        # A relational shape starts at the tailer's position, not a dump's.
        relational = bool(shape.inner_sets)
        if cursor is None and not relational and self.dumps is not None and self.catalog:
            try:
                layout = ShapeLayout.of(shape, self.catalog)
                if await self._may_have_dump(layout.shape_key):
                    bounds = await self.retention.bounds()
                    dump = await find_dump_source(self.dumps, layout, bounds)
            except Exception:
                log.exception("looking for a dump of %r failed; reading Postgres", shape)
        kind = RelationalSession if relational else SyncSession
        session = kind(
            shape=shape,
            cursor=cursor,
            reader=self.reader,
            retention=self.retention,
            tailer=self.tailer,
            pool=self.connections,
            budget=budget,
            max_message_bytes=self.settings.gateway_max_message_bytes,
            metrics=self.metrics,
            dump=dump,
            client=client,
            snapshots=self.snapshots,
        )
        return with_types(session.messages(), shape.wire.type_names())

    async def _may_have_dump(self, shape_key: str) -> bool:
        """Whether the store may hold a dump of the shape, by the set of shapes with
        dumps read at most `DUMP_SHAPES_TTL_S` ago (one read shared by every subscription
        starting meanwhile, instead of a lookup each: a dump published since is only
        used from the next read on)."""
        if time.monotonic() - self._dump_shapes_at > DUMP_SHAPES_TTL_S:
            self._dump_shapes = await self._read_dump_shapes()
        return shape_key in self._dump_shapes

    async def _fetch_dump_shapes(self) -> frozenset[str]:
        if self.dumps is None:
            return frozenset()
        shapes = frozenset(await asyncio.to_thread(self.dumps.store.shape_keys))
        self._dump_shapes_at = time.monotonic()
        return shapes

    def _schema_changed(self, tables: tuple[str, ...]) -> None:
        log.info("schema of %s changed (or new); re-reading the catalog", ", ".join(tables))
        self._refresh = asyncio.get_running_loop().create_task(self.refresh_catalog())

