"""`GET /v1/bootstrap?query=...&params=...`: a shape's rows as one NDJSON stream.

    {"type":"header","columns":[...],"types":[...],"source":"dump"|"live","cursor":"..."}
    {"type":"row","row":{...}}            one per row, values in their wire form
    {"type":"end","count":N,"cursor":"..."}

The caller continues with `sync(..., cursor)`; a response without the end line
(or with a different count) is incomplete. Served from a fresh-enough dump
when there is one (with `Content-Encoding: zstd` the stored body is sent as
is), else read live from Postgres in a `REPEATABLE READ` snapshot while a
dump build is enqueued. Bodies are produced by sync generators that Starlette
runs in its thread pool, one batch at a time: memory stays flat.

Mount with `bootstrap_route(BootstrapService.from_settings(settings))`; the
app must have `app.state.authenticator` (`claims_from_authorization`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from typing import Any

import psycopg
import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pgsift.middleware.catalog import load_catalog, require_replica_identity
from pgsift.middleware.dumps import snapshot as dumps
from pgsift.middleware.dumps.encoding import Encoding, compressed, negotiate
from pgsift.middleware.dumps.enqueue import ClaimsUsed, bump_popularity, enqueue_build
from pgsift.middleware.dumps.format import end_line, header_line
from pgsift.middleware.dumps.source import RowEncoder, ShapeLayout, database_name, open_snapshot
from pgsift.middleware.dumps.store import DumpInfo, DumpStore
from pgsift.middleware.errors import AuthError, ConfigError, GatewayError
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.feed.retention import FeedRetention
from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import JsonLimits
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import PolicyError, QueryError
from pgsift.subscriptions.policy import Policy, policies_from_config
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

PATH = "/v1/bootstrap"
MEDIA_TYPE = "application/x-ndjson"
CATALOG_TTL_S = 30.0


class BootstrapService:
    """Everything the endpoint needs besides the authenticator on `app.state`."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: redis.Redis[bytes],
        store: DumpStore | None = None,
        catalog: Callable[[], Catalog] | None = None,
        policies: Mapping[str, Policy] | None = None,
    ) -> None:
        if not settings.database_url:
            raise ConfigError("the bootstrap endpoint needs database_url")
        self.settings = settings
        self.database_url = settings.database_url
        self.database = database_name(settings.database_url)
        self.client = client
        self.reader = FeedReader(client, self.database)
        self.store = store or dumps.open_store(settings, client, self.database)
        self.catalog = catalog or CachedCatalog(settings.database_url)
        self.policies = policies if policies is not None else policies_from_config(
            settings.policies
        )
        self.json_limits = JsonLimits.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> BootstrapService:
        if not settings.redis_url:
            raise ConfigError("the bootstrap endpoint needs redis_url")
        return cls(settings=settings, client=redis.Redis.from_url(settings.redis_url))

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
        info = await run_in_threadpool(self._lease_fresh_dump, layout)
        if info is not None:
            body = self._dump_body(dumps.DumpSnapshot(self.store, info), encoding)
            source = "dump"
        else:
            lines = self._live_lines(shape, layout)
            # The first line needs the snapshot: open it before answering, so
            # a database that is down is a 503, not a truncated 200.
            try:
                first = await run_in_threadpool(next, lines)
            except Exception:
                log.exception("live bootstrap of shape %s failed", layout.shape_key)
                return _error(503, "cannot read the rows from Postgres right now; retry later")
            await run_in_threadpool(self._enqueue_build, layout, query, params, claims)
            body = compressed(chain([first], lines), encoding)
            source = "live"
        headers = {"X-Pgsift-Source": source, "Cache-Control": "no-store"}
        if encoding != "identity":
            headers["Content-Encoding"] = encoding
            headers["Vary"] = "Accept-Encoding"
        return StreamingResponse(body, media_type=MEDIA_TYPE, headers=headers)

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

    def _lease_fresh_dump(self, layout: ShapeLayout) -> DumpInfo | None:
        return dumps.lease_fresh_dump(
            self.client,
            self.database,
            self.store,
            layout,
            max_age_s=self.settings.dumps_max_age_s,
            feed=FeedRetention(self.reader.client, self.reader.stream).bounds(),
        )

    def _enqueue_build(
        self, layout: ShapeLayout, query: str, params: list[Any], claims: Mapping[str, Any]
    ) -> None:
        enqueue_build(
            self.client,
            self.database,
            shape_key=layout.shape_key,
            query=query,
            params=params,
            claims=claims,
            timeout_s=self.settings.dumps_build_timeout_s,
        )

    def _dump_body(self, snapshot: dumps.DumpSnapshot, encoding: Encoding) -> Iterator[bytes]:
        dump_id = snapshot.info.dump_id
        try:
            if encoding == "zstd":
                yield from snapshot.compressed()  # the stored frame is the whole response
            else:
                yield from compressed(snapshot.ndjson(), encoding)
        finally:
            dumps.release(self.client, self.database, dump_id)

    def _live_lines(self, shape: Shape, layout: ShapeLayout) -> Iterator[bytes]:
        sql, params = shape.to_sql()
        encoder = RowEncoder(layout.columns, layout.types)
        with open_snapshot(self.database_url, self.reader) as read:
            cursor = str(read.cursor)
            yield header_line(layout.columns, layout.types, "live", cursor)
            count = 0
            for rows in read.rows(sql, params):
                count += len(rows)
                yield encoder.encode(rows)
            yield end_line(count, cursor)


def bootstrap_route(service: BootstrapService) -> Route:
    """The route to add to the gateway's Starlette app."""
    return Route(PATH, service.handle, methods=["GET"], name="bootstrap")


class CachedCatalog:
    """The live catalog, re-read at most every `ttl_s` seconds."""

    def __init__(self, database_url: str, ttl_s: float = CATALOG_TTL_S) -> None:
        self.database_url = database_url
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0

    def __call__(self) -> Catalog:
        with self._lock:
            if self._catalog is None or time.monotonic() - self._loaded_at > self.ttl_s:
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    self._catalog = load_catalog(conn)
                self._loaded_at = time.monotonic()
            return self._catalog


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
