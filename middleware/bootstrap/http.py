"""`GET /v1/bootstrap?query=...&params=...`: a shape's rows as one NDJSON stream.

    {"type":"header","columns":[...],"types":[...],"source":"dump"|"live","cursor":"..."}
    {"type":"row","row":{...}}            one per row, values in their wire form
    {"type":"end","count":N,"cursor":"..."}

The caller continues with `sync(..., cursor)`; a response without the end line
(or with a different count) is incomplete. Both kinds of `RowSource` serve it:
a fresh-enough dump when there is one (with `Content-Encoding: zstd` the stored
body is sent as is), else a live snapshot of Postgres (on a connection of its
own) while a dump build is enqueued. Bodies stream a batch at a time, the
blocking and CPU-heavy parts in worker threads: memory stays flat.

Mount with `bootstrap_route(BootstrapService.from_settings(settings))`; the
app must have `app.state.authenticator` (`claims_from_authorization`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.bootstrap.snapshot import snapshot_connection
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery, RowSource, find_dump_source
from pgsift.middleware.catalog import require_replica_identity
from pgsift.middleware.dumps.encoding import Encoding, negotiate
from pgsift.middleware.dumps.enqueue import ClaimsUsed, bump_popularity, enqueue_build
from pgsift.middleware.errors import AuthError, GatewayError
from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import JsonLimits
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


class BootstrapService:
    """Everything the endpoint needs besides the authenticator on `app.state`."""

    def __init__(self, wiring: Wiring) -> None:
        self.settings = wiring.settings
        self.database_url = wiring.database_url
        self.database = wiring.database
        self.client = wiring.client
        self.jobs = wiring.jobs_client
        self.feed = wiring.feed_reader()
        self.finder = wiring.dump_finder()
        self.policies = wiring.policies
        self._catalogs = wiring.catalog_source
        self.json_limits = JsonLimits.from_settings(wiring.settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> BootstrapService:
        return cls(Wiring.from_settings(settings))

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
            shape, layout, claims = await run_in_threadpool(self._shape, query, params, claims)
        except PolicyError as exc:
            return _error(403, str(exc))
        except QueryError as exc:
            return _error(400, str(exc), position=exc.position)
        except GatewayError as exc:
            return _error(400, str(exc))
        encoding = negotiate(request.headers.get("accept-encoding"))
        await run_in_threadpool(
            bump_popularity, self.client, self.database, layout.shape_key, query, params, claims
        )
        # Leased before answering, and only if still there once leased:
        # drop_stale_dumps leaves it alone from now on.
        bounds = await run_in_threadpool(self.feed.bounds)
        source: RowSource | None = await find_dump_source(self.finder, layout, bounds)
        if source is None:
            # The header needs the snapshot: take it before answering, so a
            # database that is down is a 503, not a truncated 200.
            try:
                source = await LiveRows.open(
                    await snapshot_connection(self.database_url),
                    bounds.end,  # recorded before the snapshot
                    RowQuery.of_shape(shape),
                    batch=LIVE_FETCH_ROWS,
                )
            except Exception:
                log.exception("live bootstrap of shape %s failed", layout.shape_key)
                return _error(503, "cannot read the rows from Postgres right now; retry later")
            try:
                await run_in_threadpool(self._enqueue_build, layout, query, params, claims)
            except BaseException:
                await source.close()
                raise
        headers = {"X-Pgsift-Source": source.kind, "Cache-Control": "no-store"}
        if encoding != "identity":
            headers["Content-Encoding"] = encoding
            headers["Vary"] = "Accept-Encoding"
        return StreamingResponse(_body(source, encoding), media_type=MEDIA_TYPE, headers=headers)

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



async def _body(source: RowSource, encoding: Encoding) -> AsyncIterator[bytes]:
    """The source's response body; the source ends with it (a client gone included)."""
    try:
        async for chunk in source.body(encoding):
            yield chunk
    finally:
        await source.close()


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


def _error(status: int, message: str, *, headers: dict[str, str] | None = None,
           position: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if position is not None:
        body["position"] = position
    return JSONResponse(body, status_code=status, headers=headers)
