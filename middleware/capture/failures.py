"""What ends a capture session, and which of those capture retries after.

Capture retries whatever a server going away or coming back can cause: a
broken replication stream, Postgres or Redis unreachable, Redis out of memory.
It does not retry what retrying cannot fix (a publication that does not exist,
data Postgres refuses): those end the process with the error.
"""

from __future__ import annotations

import psycopg
import psycopg2
import redis

from pgsift.middleware.errors import CaptureError


class LockLost(CaptureError):
    """The capture lock expired or was taken over while this process held it."""


class StreamLost(CaptureError):
    """The replication connection broke (server restart, network): start a new session."""


# psycopg2 errors about the request itself (no such publication, bad data): retrying
# cannot help. Everything else from a replication connection means it broke.
FATAL_PG = (
    psycopg2.ProgrammingError,
    psycopg2.IntegrityError,
    psycopg2.DataError,
    psycopg2.NotSupportedError,
)
RETRYABLE = (
    StreamLost,
    redis.ConnectionError,
    redis.TimeoutError,
    # A Redis Cluster failing over or resharding (CLUSTERDOWN, TRYAGAIN).
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    psycopg.OperationalError,
)
REDIS_FULL = (
    "Redis is out of memory (maxmemory reached) and refuses to store the feed; nothing is "
    "lost (the slot keeps every change until Redis has it) and capture resumes once Redis has "
    "room: raise maxmemory (CONFIG SET maxmemory ...) or free memory (`pgsift worker` trims "
    "the feed to feed_max_len / feed_max_age_s)"
)


def redis_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is Redis refusing a write for want of memory
    (`-OOM command not allowed when used memory > 'maxmemory'`; redis-py drops the
    `OOM` of a plain reply, a script's refusal keeps it)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, redis.ResponseError) and "when used memory > " in str(cause):
            return True
        cause = cause.__cause__
    return False
