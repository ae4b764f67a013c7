"""Asking the workers for a dump build, from the gateway or the CLI.

The job is named by its import path, so the gateway (middleware) enqueues it
without importing `pgsift.workers`. A pending marker per shape makes a burst
of live bootstraps of one shape enqueue one build, not hundreds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Job

from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.keys import DUMPS_QUEUE as DUMPS_QUEUE
from pgsift.middleware.dumps.keys import MAINTENANCE_QUEUE as MAINTENANCE_QUEUE
from pgsift.middleware.dumps.keys import QUEUES as QUEUES

BUILD_JOB = "pgsift.workers.build.build_dump"
# Retries of a failed build, with backoff (seconds); needs a worker with its scheduler on.
RETRY_INTERVALS_S = (10, 60, 300)
# Shapes whose popularity is kept (the warmers build the top `dumps_warm_top`).
POPULAR_KEEP = 1000

# KEYS: counts (zset shape key -> count), specs (hash shape key -> spec).
# ARGV: shape key, amount, spec, keep. Bump, then forget the least counted
# beyond `keep` - never the shape just bumped, so that a new shape can climb.
BUMP_SCRIPT = """
redis.call('ZINCRBY', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if excess <= 0 then
  return 0
end
local gone = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess)) do
  if member ~= ARGV[1] and #gone < excess then
    gone[#gone + 1] = member
  end
end
for i = 1, #gone, 1000 do
  local last = math.min(i + 999, #gone)
  redis.call('ZREM', KEYS[1], unpack(gone, i, last))
  redis.call('HDEL', KEYS[2], unpack(gone, i, last))
end
return #gone
"""


def enqueue_build(
    client: redis.Redis[bytes],
    database: str,
    *,
    jobs: redis.Redis[bytes],
    shape_key: str,
    query: str,
    params: Sequence[Any] = (),
    claims: Mapping[str, Any] | None = None,
    timeout_s: float = 3600.0,
    force: bool = False,
) -> Job | None:
    """Enqueue `build_dump(query, params, claims, shape_key)` on the RQ Redis `jobs`;
    None if one is pending (a mark in `client`, the Redis of the database's keys)."""
    pending = keys.build_pending(database, shape_key)
    if not client.set(pending, "1", nx=True, ex=int(timeout_s)) and not force:
        return None
    queue = Queue(DUMPS_QUEUE, connection=jobs)
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


class ClaimsUsed(Mapping[str, Any]):
    """A caller's claims, noting those read: pass it to `Shape.parse`, then `.used()`.

    The claims a shape's policy reads (its `auth.<claim>`s) are all a worker
    needs to parse the same shape again; the rest of a token (`exp`, `iat`,
    ...) differs from one refresh to the next and must not make it another shape.
    """

    def __init__(self, claims: Mapping[str, Any]) -> None:
        self._claims = claims
        self._read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        value = self._claims[name]
        self._read.add(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims)

    def __len__(self) -> int:
        return len(self._claims)

    def used(self) -> dict[str, Any]:
        return {name: self._claims[name] for name in sorted(self._read)}


def bump_popularity(
    client: redis.Redis[bytes],
    database: str,
    shape_key: str,
    query: str,
    params: Sequence[Any],
    claims: Mapping[str, Any] | None,
    *,
    amount: float = 1.0,
    keep: int = POPULAR_KEEP,
) -> None:
    """Count one more bootstrap/subscription of a shape; warmers build the top ones.

    Counted by shape key; the spec to rebuild it (query, params and the
    `claims` its policy reads, see `ClaimsUsed`) is kept beside the count. Only
    the `keep` most counted shapes stay (and the one just bumped), so the set
    is bounded. Counts do not decay: a once-popular shape stays until outcounted.
    """
    script = client.register_script(BUMP_SCRIPT)
    script(
        keys=[keys.popular_shapes(database), keys.popular_specs(database)],
        args=[shape_key, amount, shape_spec(query, params, claims), keep],
    )


def popular_specs(
    client: redis.Redis[bytes], database: str, top: int
) -> list[tuple[str, dict[str, Any]]]:
    """The `top` most counted shapes, most first: (shape key, {"query", "params", "claims"})."""
    if top <= 0:
        return []
    shape_keys = client.zrevrange(keys.popular_shapes(database), 0, top - 1)
    if not shape_keys:
        return []
    specs = client.hmget(keys.popular_specs(database), shape_keys)
    return [
        (_text(key), json.loads(spec))
        for key, spec in zip(shape_keys, specs, strict=True)
        if spec is not None
    ]


def shape_spec(query: str, params: Sequence[Any], claims: Mapping[str, Any] | None) -> str:
    """The canonical JSON of what a worker needs to parse the shape again."""
    spec = {"query": query, "params": list(params), "claims": dict(claims or {})}
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
