"""`pgsift capture`: stream every committed change of a database into its Redis feed."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

import psycopg

from pgsift.middleware.capture import readiness
from pgsift.middleware.capture.health import CaptureHealth, HealthListener
from pgsift.middleware.capture.readiness import CaptureTarget
from pgsift.middleware.capture.runner import CaptureConfig, CaptureRunner
from pgsift.middleware.errors import CaptureError, ConfigError
from pgsift.middleware.settings import Settings, load_settings

log = logging.getLogger(__name__)

CONNECT_ATTEMPTS = 30
SWITCH_INTERVAL_S = 0.001


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by capture and doctor (they describe the same capture)."""
    parser.add_argument("--database-url", help="Postgres URL (PGSIFT_DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis URL (PGSIFT_REDIS_URL)")
    tables = parser.add_mutually_exclusive_group()
    tables.add_argument("--tables", help="comma-separated tables to capture")
    tables.add_argument(
        "--all", action="store_true", default=None, help="capture every table (FOR ALL TABLES)"
    )
    parser.add_argument("--slot", help="replication slot name (default pgsift)")
    parser.add_argument("--publication", help="publication name (default pgsift)")
    parser.add_argument("--config", help="settings file (default ./pgsift.toml)")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config,
        database_url=args.database_url,
        redis_url=getattr(args, "redis_url", None),
        capture_tables=args.tables,
        capture_all=args.all,
        capture_slot=args.slot,
        capture_publication=args.publication,
    )


def target_from(settings: Settings) -> CaptureTarget:
    if not settings.capture_all and not settings.capture_tables:
        raise ConfigError("name the tables to capture (--tables a,b) or pass --all")
    return CaptureTarget(
        slot=settings.capture_slot,
        publication=settings.capture_publication,
        tables=settings.capture_tables,
        all_tables=settings.capture_all,
        ledger=bool(settings.mutators),
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "capture", help="stream committed changes from Postgres into the Redis change feed"
    )
    add_connection_arguments(parser)
    parser.add_argument(
        "--setup", action="store_true",
        help="create the publication and slot and set REPLICA IDENTITY FULL if missing",
    )
    parser.add_argument(
        "--health-port", type=int,
        help="serve /healthz and /metrics on this port (capture_health_port; 0: any free port)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args).replace(capture_health_port=args.health_port)
    if not settings.database_url or not settings.redis_url:
        raise ConfigError("capture needs --database-url and --redis-url (or PGSIFT_* settings)")
    target = target_from(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    config = CaptureConfig(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        target=target,
        max_changes_per_entry=settings.capture_max_changes_per_entry,
        lock_ttl_s=settings.capture_lock_ttl_s,
    )
    health = CaptureHealth(stale_after_s=settings.feed_stale_after_s)
    listener = None
    if settings.capture_health_port is not None:
        listener = HealthListener(
            health, settings.capture_health_host, settings.capture_health_port
        ).start()
        log.info("health and metrics on http://%s:%s/healthz and /metrics",
                 settings.capture_health_host, listener.port)
    try:
        prepare(settings.database_url, target, setup=args.setup, stop=stop)
        # The appender thread needs the GIL briefly after each Redis reply; with the
        # default 5 ms switch interval it waits behind the decoding thread that long,
        # and the decoder in turn waits for a free batch slot (bench/capture: +12%).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        CaptureRunner(config, stop, health).run()
    finally:
        if listener is not None:
            listener.close()
    return 0


def prepare(
    database_url: str, target: CaptureTarget, *, setup: bool, stop: threading.Event
) -> None:
    """Check (or with `setup`, make) the database ready; wait for it if it is down."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                _prepare(conn, target, setup=setup)
                return
        except psycopg.OperationalError as exc:
            log.warning("cannot reach Postgres (%s); retrying", str(exc).strip())
            if stop.wait(min(5.0, 0.2 * 2**attempt)):
                return
    raise CaptureError(f"Postgres unreachable after {CONNECT_ATTEMPTS} attempts")


def _prepare(conn: psycopg.Connection[Any], target: CaptureTarget, *, setup: bool) -> None:
    if not setup:
        problems = readiness.check(conn, target)
        if problems:
            raise CaptureError(readiness.describe(
                problems,
                header="the database is not ready for capture (run with --setup to apply the "
                "automatic fixes, or `pgsift doctor`):",
            ))
        return
    for attempt in range(3):
        try:
            for statement in readiness.setup(conn, target):
                log.info("setup: %s", statement)
            return
        except (psycopg.errors.DuplicateObject, psycopg.errors.ObjectInUse):
            # Another capture set up the same objects at the same moment.
            time.sleep(0.1 * (attempt + 1))
    readiness.setup(conn, target)
