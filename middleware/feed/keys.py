"""Every Redis key name pgsift uses, as templates in one place."""

from __future__ import annotations

import psycopg

from pgsift.middleware.errors import ConfigError

# {0} is the database name: one feed (and one capture) per database. The braces
# make it a Redis Cluster hash tag, so all keys of one database share a slot.
FEED_STREAM = "pgsift:{{{0}}}:feed"
# The highest stream ID pgsift's trimming (workers/trim.py) ever removed from the
# feed: a cursor at or after it lost nothing (see pgsift.middleware.feed.bounds).
FEED_TRIMMED_SUFFIX = ":trimmed"
FEED_TRIMMED = FEED_STREAM + FEED_TRIMMED_SUFFIX
# Capture leader lock; its value is "<fencing token>:<owner id>".
CAPTURE_LOCK = "pgsift:{{{0}}}:capture:lock"
# Monotonic counter handing out fencing tokens to capture leaders.
CAPTURE_FENCE = "pgsift:{{{0}}}:capture:fence"
# Capture's heartbeat: the position it has confirmed, rewritten every second with
# an expiry, so that its age is read off Redis's own clock (see feed.heartbeat).
CAPTURE_HEARTBEAT = "pgsift:{{{0}}}:capture:heartbeat"
# Hash: table -> fingerprint of its columns as last seen by capture.
RELATION_SCHEMAS = "pgsift:{{{0}}}:relations"
# The chunk size the stored chunks were cut with (a re-sent transaction must be
# cut the same way, whatever the setting says now).
CAPTURE_CHUNK_SIZE = "pgsift:{{{0}}}:capture:chunk_size"

# The key of each template: `feed_stream(database)` and so on.
feed_stream = FEED_STREAM.format  # (database)
feed_trimmed = FEED_TRIMMED.format  # (database)


def feed_trimmed_of(stream: str) -> str:
    """The trim marker of a feed stream key (`feed_trimmed` of its database)."""
    return stream + FEED_TRIMMED_SUFFIX


capture_lock = CAPTURE_LOCK.format  # (database)
capture_fence = CAPTURE_FENCE.format  # (database)
capture_heartbeat = CAPTURE_HEARTBEAT.format  # (database)
relation_schemas = RELATION_SCHEMAS.format  # (database)
capture_chunk_size = CAPTURE_CHUNK_SIZE.format  # (database)


def database_of(database_url: str) -> str:
    """The database name in a Postgres URL or DSN: the {0} of every key above.

    pgsift's one reading of it (the feed, the dumps and every key depend on it);
    ConfigError when the URL cannot be read or names no database.
    """
    try:
        name = psycopg.conninfo.conninfo_to_dict(database_url).get("dbname")
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"the database URL is not a Postgres URL or DSN: {exc}") from exc
    if not name:
        raise ConfigError(
            "the database URL names no database (postgresql://host/DBNAME or dbname=...)"
        )
    return str(name)
