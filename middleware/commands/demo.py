"""`pgsift demo` (interim): capture a small live workload and tail the feed.

With no PGSIFT_DATABASE_URL / PGSIFT_REDIS_URL configured it starts throwaway
servers. It creates a `demo_events` table, runs capture in this process,
writes a row now and then, and prints the feed as `pgsift feed tail` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import psycopg
import redis

from pgsift.middleware.capture.readiness import CaptureTarget
from pgsift.middleware.capture.runner import CaptureConfig, CaptureRunner
from pgsift.middleware.commands.capture import prepare
from pgsift.middleware.commands.feed import entry_json
from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.settings import load_settings

log = logging.getLogger(__name__)

TABLE = "public.demo_events"
SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_events (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    amount numeric(10, 2),
    at timestamptz NOT NULL DEFAULT now()
)
"""
WRITE_EVERY_S = 1.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="capture a small live workload into the feed and print it (Ctrl-C stops)"
    )
    parser.add_argument("--config", help="settings file (default ./pgsift.toml)")
    parser.set_defaults(func=run)


@contextlib.contextmanager
def servers(database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """The configured URLs, or throwaway servers for whichever is missing."""
    with contextlib.ExitStack() as stack:
        if database_url is None:
            print("starting a throwaway PostgreSQL ...", flush=True)
            database_url = stack.enter_context(EmbeddedPostgres()).url
        if redis_url is None:
            print("starting a throwaway Redis ...", flush=True)
            redis_url = stack.enter_context(EmbeddedRedis()).url
        yield database_url, redis_url


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with servers(settings.database_url, settings.redis_url) as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        target = CaptureTarget(
            slot=settings.capture_slot, publication=settings.capture_publication, tables=(TABLE,)
        )
        prepare(database_url, target, setup=True, stop=stop)
        runner = CaptureRunner(CaptureConfig(database_url, redis_url, target), stop)
        threads = [
            threading.Thread(target=until_failure, args=(runner.run, stop), name="capture"),
            threading.Thread(target=write, args=(database_url, stop), name="writer"),
        ]
        for thread in threads:
            thread.start()
        try:
            tail(redis_url, keys.database_of(database_url), stop)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    print("pgsift demo stopped", flush=True)
    return 0


def until_failure(job: Callable[[], None], stop: threading.Event) -> None:
    """Run `job`; if it fails, log why and stop the whole demo rather than hang."""
    try:
        job()
    except Exception:
        log.exception("demo: capture failed")
        stop.set()


def write(database_url: str, stop: threading.Event) -> None:
    """A tiny application: inserts, updates and deletes on demo_events."""
    rng = random.Random()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not stop.wait(WRITE_EVERY_S):
            try:
                roll = rng.random()
                if roll < 0.6:
                    conn.execute(
                        "INSERT INTO demo_events (kind, amount) VALUES (%s, %s)",
                        [rng.choice(["signup", "order", "refund"]), round(rng.uniform(1, 500), 2)],
                    )
                elif roll < 0.9:
                    conn.execute(
                        "UPDATE demo_events SET amount = amount + 1 WHERE id ="
                        " (SELECT max(id) FROM demo_events)"
                    )
                else:
                    conn.execute(
                        "DELETE FROM demo_events WHERE id = (SELECT min(id) FROM demo_events)"
                    )
            except psycopg.Error as exc:
                log.warning("demo writer: %s", exc)
                return


def tail(redis_url: str, database: str, stop: threading.Event) -> None:
    reader = FeedReader.from_url(redis_url, database)
    cursor = reader.last_id()
    announced = False
    try:
        while not stop.is_set():
            try:
                entries = reader.read_after(cursor, count=100, block_ms=500)
            except redis.ConnectionError:
                # Ctrl-C reaches the embedded redis-server too (same process group).
                if stop.wait(1.0):
                    return
                raise
            for entry in entries:
                if not announced:
                    print(f"pgsift demo ready: changes of {TABLE} flow into the feed "
                          f"{keys.feed_stream(database)} (Ctrl-C stops)", flush=True)
                    announced = True
                sys.stdout.write(json.dumps(entry_json(entry), ensure_ascii=False) + "\n")
                sys.stdout.flush()
                cursor = entry.id
    finally:
        reader.close()
