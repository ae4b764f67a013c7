"""Failures of a command as one line an operator can act on: what is wrong, what to do.

`pgsift` prints `explain(exc)` instead of a traceback (`--debug` shows both).
The Postgres and Redis errors a misconfiguration or an outage causes get a line
naming the setting to check; pgsift's own errors already say it; anything else
is a bug and says so.
"""

from __future__ import annotations

import psycopg
import psycopg2
import psycopg2.errors
import redis

from pgsift.subscriptions.errors import PgsiftError

DENIED = (psycopg.errors.InsufficientPrivilege, psycopg2.errors.InsufficientPrivilege)
UNREACHABLE = (psycopg.OperationalError, psycopg2.OperationalError)


def explain(exc: BaseException) -> str:
    """One line for `exc`."""
    if isinstance(exc, PgsiftError):
        return str(exc)
    text = _first_line(exc)
    if isinstance(exc, DENIED):
        return (f"Postgres refused: {text}; `pgsift doctor` lists the grants capture and the "
                "gateway need, and who may run each")
    if isinstance(exc, UNREACHABLE):
        return (f"cannot use Postgres: {text}; check database_url (--database-url, "
                "PGSIFT_DATABASE_URL) and that the server is up")
    if isinstance(exc, redis.AuthenticationError):
        return f"Redis refused the credentials: {text}; check the password in redis_url"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return (f"cannot reach Redis: {text}; check redis_url (--redis-url, PGSIFT_REDIS_URL) "
                "and that Redis is running")
    if isinstance(exc, redis.ResponseError) and "when used memory > " in text:
        return (f"Redis is out of memory ({text}): raise its maxmemory or free memory "
                "(`pgsift worker` trims the feed)")
    if isinstance(exc, psycopg.Error | psycopg2.Error):
        return f"Postgres error: {text}"
    if isinstance(exc, redis.RedisError):
        return f"Redis error: {text}"
    if isinstance(exc, OSError):
        return text
    return (f"unexpected {type(exc).__name__}: {text} (a bug: run again with --debug for the "
            "traceback, and report it)")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
