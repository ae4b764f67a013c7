"""`pgsift feed tail`: print the change feed, one JSON object per line per transaction."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.entry import FeedEntry, format_lsn
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.settings import load_settings
from pgsift.subscriptions.change import Row
from pgsift.subscriptions.wire import untyped_json

FOLLOW_BLOCK_MS = 1000
PAGE = 500


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("feed", help="look at the Redis change feed")
    commands = parser.add_subparsers(dest="feed_command", required=True)
    tail = commands.add_parser(
        "tail", help="print feed entries as JSON lines (one per transaction or chunk)"
    )
    tail.add_argument("--from", dest="cursor", help="print entries after this stream ID")
    tail.add_argument("--follow", action="store_true", help="keep waiting for new entries")
    tail.add_argument("--redis-url", help="Redis URL (PGSIFT_REDIS_URL)")
    which = tail.add_mutually_exclusive_group()
    which.add_argument("--database", help="database name whose feed to read")
    which.add_argument("--database-url", help="Postgres URL; its dbname names the feed")
    tail.add_argument("--config", help="settings file (default ./pgsift.toml)")
    tail.set_defaults(func=run_tail)


def entry_json(entry: FeedEntry) -> dict[str, Any]:
    """The JSON form of a feed entry, as `feed tail` prints it."""
    document: dict[str, Any] = {
        "id": entry.id,
        "lsn": format_lsn(entry.lsn),
        "xid": entry.xid,
        "commit_time": entry.commit_time.isoformat(),
        "changes": [
            {
                "table": c.table,
                "op": c.op,
                "key": _row(c.key),
                "new": _row(c.new),
                "old": _row(c.old),
            }
            for c in entry.changes
        ],
    }
    if entry.chunk or not entry.last:  # only big transactions are split
        document["chunk"] = entry.chunk
        document["last"] = entry.last
    if entry.schema_changes:
        document["schema_changes"] = list(entry.schema_changes)
    return document


def _row(row: Row | None) -> dict[str, Any] | None:
    return None if row is None else {name: untyped_json(value) for name, value in row.items()}


def run_tail(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, redis_url=args.redis_url, database_url=args.database_url)
    if not settings.redis_url:
        raise ConfigError("feed tail needs --redis-url (or PGSIFT_REDIS_URL)")
    if args.database:
        database = args.database
    elif settings.database_url:
        database = keys.database_of(settings.database_url)
    else:
        raise ConfigError("feed tail needs --database NAME or --database-url URL")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    reader = FeedReader.from_url(settings.redis_url, database)
    cursor = FeedPosition(args.cursor) if args.cursor is not None else None
    try:
        while True:
            entries = reader.read_after(
                cursor, count=PAGE, block_ms=FOLLOW_BLOCK_MS if args.follow else None
            )
            for entry in entries:
                sys.stdout.write(json.dumps(entry_json(entry), ensure_ascii=False) + "\n")
                cursor = entry.id
            sys.stdout.flush()
            if not entries and not args.follow:
                return 0
    except BrokenPipeError:
        return 0
    finally:
        reader.close()
