"""`pgsift serve`: the gateway (GraphQL sync subscriptions, health, metrics) under uvicorn."""

from __future__ import annotations

import argparse

import psycopg

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.mutations import ledger
from pgsift.middleware.redis_clients import sync_redis
from pgsift.middleware.settings import Settings, load_settings

CONNECT_TIMEOUT_S = 5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve GraphQL sync subscriptions for one database (tails its feed)"
    )
    parser.add_argument("--database-url", help="Postgres URL (PGSIFT_DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis URL holding the feed (PGSIFT_REDIS_URL)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; 0 = any)")
    parser.add_argument("--config", help="pgsift.toml to read (PGSIFT_CONFIG)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="gateway processes sharing the port, each tailing the feed (default 1; "
             "about one per core)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the GraphQL stack is heavy, and other commands do not need it.
    from pgsift.middleware.gateway.app import create_app
    from pgsift.middleware.gateway.listen import bind, serve
    from pgsift.middleware.gateway.supervisor import Supervisor

    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give at least 1 gateway process")
    settings = load_settings(
        args.config,
        database_url=args.database_url,
        redis_url=args.redis_url,
        host=args.host,
        port=args.port,
    )
    listener = bind(settings.host, settings.port)  # a taken port fails first, at once
    with listener:
        _reachable(settings)
        if args.workers == 1:
            serve(create_app(settings), listener, settings)
            return 0
        # Each worker makes its own app (connections, tailer) after the fork.
        return Supervisor(
            listener, lambda sock: serve(create_app(settings), sock, settings),
            workers=args.workers,
        ).run()


def _reachable(settings: Settings) -> None:
    """Fail before serving when Postgres or Redis is unreachable (or the mutation ledger
    missing): inside the app's startup the same failure would end as uvicorn's traceback."""
    if not settings.database_url or not settings.redis_url:
        raise ConfigError("serve needs --database-url and --redis-url (or PGSIFT_* settings)")
    with psycopg.connect(settings.database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        if settings.mutators:
            ledger.require(conn)
    client = sync_redis(settings.redis_url)
    try:
        client.ping()
    finally:
        client.close()
