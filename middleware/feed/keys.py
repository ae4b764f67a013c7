"""Every Redis key name pgsift uses, as templates in one place."""

from __future__ import annotations

# {0} is the database name: one feed (and one capture) per database. The braces
# make it a Redis Cluster hash tag, so all keys of one database share a slot.
FEED_STREAM = "pgsift:{{{0}}}:feed"
# Capture leader lock; its value is "<fencing token>:<owner id>".
CAPTURE_LOCK = "pgsift:{{{0}}}:capture:lock"
# Monotonic counter handing out fencing tokens to capture leaders.
CAPTURE_FENCE = "pgsift:{{{0}}}:capture:fence"
# Hash: table -> fingerprint of its columns as last seen by capture.
RELATION_SCHEMAS = "pgsift:{{{0}}}:relations"


def feed_stream(database: str) -> str:
    return FEED_STREAM.format(database)


def capture_lock(database: str) -> str:
    return CAPTURE_LOCK.format(database)


def capture_fence(database: str) -> str:
    return CAPTURE_FENCE.format(database)


def relation_schemas(database: str) -> str:
    return RELATION_SCHEMAS.format(database)
