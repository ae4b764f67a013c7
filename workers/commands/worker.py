"""`pgsift worker`: RQ workers for dump builds, cache warming and feed trimming."""

from __future__ import annotations

import argparse
import os

from pgsift.middleware.dumps.keys import QUEUES
from pgsift.middleware.settings import Settings, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker", help="run an RQ worker: dump builds, cache warming, feed trimming"
    )
    add_connection_flags(parser)
    parser.add_argument("--queues", nargs="+", default=list(QUEUES),
                        help=f"queues to work (default: {' '.join(QUEUES)})")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="do not take part in enqueueing periodic warm/trim jobs")
    parser.set_defaults(func=run)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="pgsift.toml to read (default: ./pgsift.toml)")
    parser.add_argument("--database-url", help="Postgres URL (PGSIFT_DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis URL (PGSIFT_REDIS_URL)")


def settings_for_jobs(args: argparse.Namespace) -> Settings:
    """The settings of the flags, also exported to the environment jobs read theirs from."""
    settings = load_settings(args.config, database_url=args.database_url,
                             redis_url=args.redis_url)
    if args.config:
        os.environ["PGSIFT_CONFIG"] = os.path.abspath(args.config)
    if settings.database_url:
        os.environ["PGSIFT_DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        os.environ["PGSIFT_REDIS_URL"] = settings.redis_url
    if settings.jobs_redis_url:
        os.environ["PGSIFT_JOBS_REDIS_URL"] = settings.jobs_redis_url
    return settings


def run(args: argparse.Namespace) -> int:
    # Imported here: every `pgsift` command imports this module to register it.
    from pgsift.workers.context import JobContext
    from pgsift.workers.runner import run_worker

    context = JobContext.from_settings(settings_for_jobs(args))
    try:
        run_worker(context, queues=args.queues, burst=args.burst,
                   scheduler=not args.no_scheduler)
    finally:
        context.close()
    return 0
