"""`pgsift servers`: start embedded Postgres and Redis and print their URLs."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "servers", help="run a throwaway Postgres (wal_level=logical) and Redis until Ctrl-C"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis:
        print(f"PGSIFT_DATABASE_URL={postgres.url}", flush=True)
        print(f"PGSIFT_REDIS_URL={redis.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0
