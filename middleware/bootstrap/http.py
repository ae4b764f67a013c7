"""`GET /v1/bootstrap?query=...&params=...`: a shape's rows as one NDJSON stream.

    {"type":"header","columns":[...],"types":[...],"source":"dump"|"live","cursor":"..."}
    {"type":"row","row":{...}}            one per row, values in their wire form
    {"type":"end","count":N,"cursor":"..."}

The caller continues with `sync(..., cursor)`; a response without the end line
(or with a different count) is incomplete. Both kinds of `RowSource` serve it:
a fresh-enough dump when there is one (with `Content-Encoding: zstd` the stored
body is sent as is), else a live snapshot of Postgres while a dump build is
enqueued. A relational shape (inner selects in its query or policy) is always
read live and never dumped: a dump's rows hold only while the inner sets are
what they were at its snapshot (docs/relational.md, "Snapshots, dumps").
Bodies stream a batch at a time, the blocking and CPU-heavy parts in worker
threads: memory stays flat.

No client can exhaust Postgres through it:

* a live snapshot takes its connection from the gateway's snapshot pool
  (`SnapshotConnections`, shared with `sync` subscriptions), waiting at most
  `bootstrap_wait_s`; then 503 with `Retry-After`;
* a caller has at most `bootstrap_max_per_caller` bootstraps in flight
  (`callers.py`); past it 429 with `Retry-After`, checked before anything is
  read, leased or counted, so a refused request changes nothing;
* the response (`stream.py`) drops a client that takes no bytes for
  `bootstrap_write_timeout_s` or goes away, and then always closes the source:
  the snapshot transaction ends and its connection returns, a dump lease is
  released.

Mount with `bootstrap_route(BootstrapService.from_settings(settings))`; the
app must have `app.state.authenticator` (`claims_from_authorization`).
`create_app` passes the gateway's pool and metrics instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsift.middleware.bootstrap.callers import CallerSlots, caller_of
from pgsift.middleware.bootstrap.connections import SnapshotConnections
from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery, RowSource, find_dump_source
from pgsift.middleware.bootstrap.stream import Outcome, SourceResponse
from pgsift.middleware.catalog import require_replica_identity
from pgsift.middleware.dumps.encoding import negotiate
from pgsift.middleware.dumps.enqueue import ClaimsUsed, bump_popularity, enqueue_build
from pgsift.middleware.errors import (
    AuthError,
    GatewayBusyError,
    GatewayError,
    TooManyRequestsError,
)
from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import JsonLimits
from pgsift.middleware.gateway.metrics import GatewayMetrics, SnapshotSource
from pgsift.middleware.settings import Settings
from pgsift.middleware.wiring import Wiring
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import PolicyError, QueryError
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

PATH = "/v1/bootstrap"
MEDIA_TYPE = "application/x-ndjson"
CATALOG_TTL_S = 30.0
# Rows per round trip of a live bootstrap (bigger than a subscription's: whole tables).
LIVE_FETCH_ROWS = 2000
# What a 503 (no snapshot connection came free) asks the client to wait before retrying.
RETRY_AFTER_S = 1
CUT_REASONS = {
    "write_timeout": "the client took no bytes for bootstrap_write_timeout_s",
    "disconnect": "the client went away",
    "error": "an error",
}


class BootstrapService:
    """Everything the endpoint needs besides the authenticator on `app.state`.

    `connections` is the gateway's snapshot pool (`SyncService.connections`), so that
    bootstraps and subscriptions share one bound; without it the service has a pool of
    its own (opened on first use, `close()` it). `metrics`: the gateway's.
    """

    def __init__(
        self,
        wiring: Wiring,
        *,
        connections: SnapshotConnections | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings = wiring.settings
        self.database_url = wiring.database_url
        self.database = wiring.database
        self.client = wiring.client
        self.jobs = wiring.jobs_client
        self.feed = wiring.feed_reader()
        self.finder = wiring.dump_finder()
        self.policies = wiring.policies
        self._catalogs = wiring.catalog_source
        self.json_limits = JsonLimits.from_settings(settings)
        self._owns_connections = connections is None
        self.connections = connections or SnapshotConnections.from_settings(
            wiring.database_url, settings
        )
        self.metrics = metrics or GatewayMetrics()
        self.callers = CallerSlots(settings.bootstrap_max_per_caller)
        self.metrics.bootstraps_in_flight.set_function(lambda: self.callers.total)

    @classmethod
    def from_settings(cls, settings: Settings) -> BootstrapService:
        return cls(Wiring.from_settings(settings))

    async def close(self) -> None:
        """Close the pool of its own, if it has one."""
        if self._owns_connections:
            await self.connections.close()

    def catalog(self) -> Catalog:
        """The wiring's catalog; this endpoint is not told of schema changes, so it
        re-reads it when older than `CATALOG_TTL_S`."""
        return self._catalogs.get(max_age_s=CATALOG_TTL_S)

    async def handle(self, request: Request) -> Response:
        try:
            authenticator = request.app.state.authenticator
            claims = authenticator.claims_from_authorization(request.headers.get("authorization"))
        except AuthError as exc:
            return _error(401, str(exc), headers={"WWW-Authenticate": "Bearer"})
        try:
            query, params = _query_and_params(request, self.json_limits)
            shape, layout, used = await run_in_threadpool(self._shape, query, params, claims)
            # Counted before anything is read or recorded: a refused request changes nothing.
            slot = self.callers.take(caller_of(claims))
        except PolicyError as exc:
            return _error(403, str(exc))
        except QueryError as exc:
            return _error(400, str(exc), position=exc.position)
        except TooManyRequestsError as exc:
            self.metrics.bootstrap_refusals.labels(reason="per_caller").inc()
            return _error(429, str(exc), headers=_retry_after(exc.retry_after_s))
        except GatewayError as exc:
            return _error(400, str(exc))
        try:
            source = await self._source(shape, layout)
        except GatewayBusyError as exc:
            slot.release()
            return _error(503, str(exc), headers=_retry_after(exc.retry_after_s))
        except BaseException:
            slot.release()
            raise
        try:
            # Served: now it counts (warm shapes), and a live one asks for a dump build.
            # A relational shape does neither: it is never dumped.
            if not shape.inner_sets:
                await run_in_threadpool(
                    bump_popularity, self.client, self.database, layout.shape_key, query,
                    params, used,
                )
            if source.kind == "live" and not shape.inner_sets:
                await run_in_threadpool(self._enqueue_build, layout, query, params, used)
        except BaseException:
            slot.release()
            await source.close()
            raise
        encoding = negotiate(request.headers.get("accept-encoding"))
        headers = {"X-Pgsift-Source": source.kind, "Cache-Control": "no-store"}
        if encoding != "identity":
            headers["Content-Encoding"] = encoding
            headers["Vary"] = "Accept-Encoding"
        started = time.monotonic()

        async def ended(outcome: Outcome) -> None:
            slot.release()
            if outcome == "complete":
                kind: SnapshotSource = "postgres" if source.kind == "live" else "dump"
                self.metrics.snapshot_streamed(kind, time.monotonic() - started, "bootstrap")
            else:
                self.metrics.bootstraps_cut.labels(reason=outcome).inc()
                log.info("bootstrap of shape %s cut short: %s", layout.shape_key,
                         CUT_REASONS[outcome])

        return SourceResponse(
            source, encoding, media_type=MEDIA_TYPE, headers=headers,
            write_timeout_s=self.settings.bootstrap_write_timeout_s, on_end=ended,
        )

    async def _source(self, shape: Shape, layout: ShapeLayout) -> RowSource:
        """A leased dump of the shape, else a live snapshot on a connection of the pool
        (waiting at most `bootstrap_wait_s`); GatewayBusyError when neither can be had.
        A relational shape is always live: a dump, even one left by an older version,
        may hold the rows of a team its caller has left since."""
        bounds = await run_in_threadpool(self.feed.bounds)
        if not shape.inner_sets:
            # Leased before answering, and only if still there once leased:
            # drop_stale_dumps leaves it alone from now on.
            dump = await find_dump_source(self.finder, layout, bounds)
            if dump is not None:
                return dump
        await self.connections.open()
        wait_s = self.settings.bootstrap_wait_s
        # The header needs the snapshot: take it before answering, so a database that
        # is down (or a pool that is full) is a 503, not a truncated 200.
        try:
            return await LiveRows.open(
                self.connections.connection(timeout=wait_s),
                bounds.end,  # recorded before the snapshot
                RowQuery.of_shape(shape),
                batch=LIVE_FETCH_ROWS,
            )
        except PoolTimeout as exc:
            self.metrics.bootstrap_refusals.labels(reason="no_connection").inc()
            raise GatewayBusyError(
                f"the gateway is busy: all {self.connections.size} of its snapshot "
                f"connections stayed busy for {wait_s:g} s (gateway_snapshot_connections, "
                "bootstrap_wait_s); retry later",
                retry_after_s=RETRY_AFTER_S,
            ) from exc
        except Exception as exc:
            log.exception("live bootstrap of shape %s failed", layout.shape_key)
            self.metrics.bootstrap_refusals.labels(reason="database").inc()
            raise GatewayBusyError(
                "cannot read the rows from Postgres right now; retry later",
                retry_after_s=RETRY_AFTER_S,
            ) from exc

    def _shape(
        self, query: str, params: list[Any], claims: Mapping[str, Any]
    ) -> tuple[Shape, ShapeLayout, dict[str, Any]]:
        """The shape, its layout, and the claims its policy read (all a build needs)."""
        catalog = self.catalog()
        read = ClaimsUsed(claims)
        shape = Shape.parse(
            query, params=params, catalog=catalog, claims=read, policies=self.policies
        )
        require_replica_identity(shape, catalog, self.policies)
        return shape, ShapeLayout.of(shape, catalog), read.used()

    def _enqueue_build(
        self, layout: ShapeLayout, query: str, params: list[Any], claims: Mapping[str, Any]
    ) -> None:
        enqueue_build(
            self.client,
            self.database,
            jobs=self.jobs,
            shape_key=layout.shape_key,
            query=query,
            params=params,
            claims=claims,
            timeout_s=self.settings.dumps_build_timeout_s,
        )



def bootstrap_route(service: BootstrapService) -> Route:
    """The route to add to the gateway's Starlette app."""
    return Route(PATH, service.handle, methods=["GET"], name="bootstrap")


def _query_and_params(request: Request, limits: JsonLimits) -> tuple[str, list[Any]]:
    query = request.query_params.get("query")
    if not query:
        raise GatewayError("missing the `query` parameter (a SELECT of one table)")
    raw = request.query_params.get("params") or "[]"
    params = client_json.load(raw, limits, "`params`")  # a ClientJSONError is a GatewayError
    if not isinstance(params, list):
        raise GatewayError("`params` must be a JSON array")
    return query, params


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, seconds))}


def _error(status: int, message: str, *, headers: dict[str, str] | None = None,
           position: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if position is not None:
        body["position"] = position
    return JSONResponse(body, status_code=status, headers=headers)
