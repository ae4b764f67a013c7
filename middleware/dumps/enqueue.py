"""Asking the workers for a dump build, from the gateway or the CLI.

The job is named by its import path, so the gateway (middleware) enqueues it
without importing `pgsift.workers`. A pending marker per shape makes a burst
of live bootstraps of one shape enqueue one build, not hundreds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from pgsift.middleware.dumps import keys
from rq import Queue, Retry
from rq.job import Job

BUILD_JOB = "pgsift.workers.build.build_dump"
DUMPS_QUEUE = "pgsift-dumps"
MAINTENANCE_QUEUE = "pgsift-maintenance"
QUEUES = (DUMPS_QUEUE, MAINTENANCE_QUEUE)
# Retries of a failed build, with backoff (seconds); needs a worker with its scheduler on.
RETRY_INTERVALS_S = (10, 60, 300)


def enqueue_build(
    client: redis.Redis[bytes],
    database: str,
    *,
    shape_key: str,
    query: str,
    params: Sequence[Any] = (),
    claims: Mapping[str, Any] | None = None,
    timeout_s: float = 3600.0,
    force: bool = False,
) -> Job | None:
    """Enqueue `build_dump(query, params, claims, shape_key)`; None if one is pending."""
    pending = keys.build_pending(database, shape_key)
    if not client.set(pending, "1", nx=True, ex=int(timeout_s)) and not force:
        return None
    queue = Queue(DUMPS_QUEUE, connection=client)
    return queue.enqueue(
        BUILD_JOB,
        query,
        list(params),
        dict(claims) if claims is not None else None,
        shape_key,
        job_timeout=int(timeout_s),
        retry=Retry(max=len(RETRY_INTERVALS_S), interval=list(RETRY_INTERVALS_S)),
        description=f"build dump of shape {shape_key}",
        meta={"shape_key": shape_key},
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


def clear_pending(client: redis.Redis[bytes], database: str, shape_key: str) -> None:
    """Called by the build when it starts: later requests may enqueue again."""
    client.delete(keys.build_pending(database, shape_key))


def bump_popularity(
    client: redis.Redis[bytes],
    database: str,
    query: str,
    params: Sequence[Any],
    claims: Mapping[str, Any] | None,
    amount: float = 1.0,
) -> None:
    """Count one more bootstrap/subscription of a shape; warmers build the top ones."""
    client.zincrby(keys.popular_shapes(database), amount, shape_spec(query, params, claims))


def shape_spec(query: str, params: Sequence[Any], claims: Mapping[str, Any] | None) -> str:
    """The canonical JSON of what a worker needs to parse the shape again."""
    spec = {"query": query, "params": list(params), "claims": dict(claims or {})}
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))
