"""The whole gateway with the demo page: sync, batch loader, streaming bootstrap, the page.

    python -m examples.web.server --database-url URL --redis-url URL [--port 8000] \\
        [--config examples/issue_tracker/pgsift.toml]

Capture must run too (`pgsift capture --all --setup`). This is how `pgsift demo`
puts the parts together; `build_app(settings)` is the same for other hosts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from examples.web.routes import web_routes
from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.listen import bind, serve
from pgsift.middleware.loader import BatchLoader
from pgsift.middleware.loader.http import rows_route
from pgsift.middleware.pgpool import LivePool
from pgsift.middleware.settings import Settings, load_settings
from pgsift.subscriptions.errors import PgsiftError
from pgsift.subscriptions.policy import policies_from_config

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "issue_tracker" / "pgsift.toml"


def build_app(settings: Settings, *, demo_users: int = 8) -> Starlette:
    """The gateway app (its `GET /v1/bootstrap` included) plus `POST /v1/rows` and the
    demo page."""
    if not settings.database_url:
        raise ValueError("build_app needs settings.database_url")
    database_url = settings.database_url
    with psycopg.connect(database_url) as conn:
        catalog = load_catalog(conn)
    pool: AsyncConnectionPool[Any] = LivePool(
        database_url,
        min_size=1,
        max_size=settings.loader_pool_size,
        open=False,
        kwargs={"autocommit": True},
        name="pgsift-loader",
    )
    loader = BatchLoader(
        pool,
        catalog=catalog,
        policies=policies_from_config(settings.policies, catalog=catalog),
        window_s=settings.loader_window_ms / 1000.0,
        max_batch=settings.loader_max_batch,
        cache_rows=settings.loader_cache_rows,
        timeout_s=settings.loader_timeout_s,
        owns_pool=True,
    )
    app = create_app(
        settings,
        loader=loader,
        routes=[
            rows_route(),
            *web_routes(database_url, users=demo_users),
        ],
    )
    app.state.loader = loader
    loader.freshness = app.state.service.freshness  # stale feed: loads skip the cache
    gateway_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open()
        try:
            async with gateway_lifespan(app):
                yield
        finally:
            await loader.close()

    app.router.lifespan_context = lifespan
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.web.server", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database-url", help="Postgres URL (PGSIFT_DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis URL (PGSIFT_REDIS_URL)")
    parser.add_argument("--host", help="default 127.0.0.1")
    parser.add_argument("--port", type=int, help="default 8000")
    parser.add_argument("--config", default=str(EXAMPLE_CONFIG))
    args = parser.parse_args(argv)
    settings = load_settings(
        args.config,
        database_url=args.database_url,
        redis_url=args.redis_url,
        host=args.host,
        port=args.port,
    )
    try:
        listener = bind(settings.host, settings.port)  # a taken port fails here, at once
    except PgsiftError as exc:
        print(f"examples.web.server: error: {exc}", file=sys.stderr)
        return 1
    with listener:
        app = build_app(settings)
        port = listener.getsockname()[1]
        print(f"demo page: http://{settings.host}:{port}/", file=sys.stderr, flush=True)
        serve(app, listener, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
