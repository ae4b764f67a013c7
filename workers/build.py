"""The `build_dump` job: a shape's rows in one snapshot, compressed into the dump store.

Relational shapes (inner selects in the query or the policy) are not dumped:
a dump's rows hold only while the inner sets are what they were at its
snapshot, and nothing would tell a membership deleted since; the gateway
serves them live (docs/relational.md, "Snapshots, dumps and /v1/bootstrap").

Safe to run twice at once: a Redis lock per shape lets one build run and the
other return "locked". Safe to kill: the store publishes a dump only after its
last chunk and trailer are written. Failures are retried with backoff by RQ
(`enqueue_build` sets the Retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from redis.exceptions import LockError
from rq import get_current_job

from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.bootstrap.snapshot import snapshot_connection
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery
from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.enqueue import clear_pending
from pgsift.middleware.dumps.format import BodyWriter, DumpHeader
from pgsift.middleware.errors import DumpError
from pgsift.subscriptions.shape import Shape
from pgsift.workers.build_status import BuildProgress, BuildReporter
from pgsift.workers.context import JobContext
from pgsift.workers.errors import WorkerError

log = logging.getLogger(__name__)

# The lock expires this long after the builder last touched it (killed builds).
LOCK_TTL_S = 60.0
LOCK_REFRESH_S = 10.0
PROGRESS_EVERY_S = 1.0
FETCH_ROWS = 2000  # rows per round trip (and per encoded batch)


@dataclass(frozen=True, slots=True)
class BuildResult:
    status: Literal["built", "locked"]
    shape_key: str
    dump_id: str | None = None
    rows: int = 0
    body_bytes: int = 0
    raw_bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class DumpBuilder:
    """Builds dumps for one database into one store."""

    def __init__(
        self,
        context: JobContext,
        *,
        lock_ttl_s: float = LOCK_TTL_S,
        progress_every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self.context = context
        self.lock_ttl_s = lock_ttl_s
        self.progress_every_s = progress_every_s

    def build(
        self,
        shape: Shape,
        layout: ShapeLayout,
        on_progress: Callable[[BuildProgress], None] | None = None,
    ) -> BuildResult:
        ctx = self.context
        lock = ctx.client.lock(
            keys.build_lock(ctx.database, layout.shape_key),
            timeout=self.lock_ttl_s,
            blocking=False,
        )
        if not lock.acquire():
            log.info("shape %s: another build holds the lock", layout.shape_key)
            return BuildResult("locked", layout.shape_key)
        try:
            # The snapshot taker is asyncio's (the gateway's); a job has a loop to itself.
            return asyncio.run(self._build_locked(shape, layout, lock, on_progress))
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("shape %s: build lock expired before release", layout.shape_key)

    async def _build_locked(
        self,
        shape: Shape,
        layout: ShapeLayout,
        lock: Any,
        on_progress: Callable[[BuildProgress], None] | None,
    ) -> BuildResult:
        ctx = self.context
        query = RowQuery.of_shape(shape)
        started = time.monotonic()
        # The feed position first, then the snapshot: every change missing from it is after.
        position = ctx.reader.bounds().end
        rows = await LiveRows.open(
            await snapshot_connection(ctx.database_url), position, query, batch=FETCH_ROWS
        )
        try:
            header = DumpHeader.stamped(layout, rows.read.stamp, position, rows.read.taken_at)
            estimate = await rows.read.estimate_rows(query.sql, query.params) if on_progress else 0
            writer = ctx.store.begin(header)
            body = BodyWriter(header)
            touched = time.monotonic()
            reported = -float("inf")
            try:
                async for lines, count in rows.lines():
                    for chunk in body.write(lines, count):
                        writer.write(chunk)
                    now = time.monotonic()
                    if now - touched >= LOCK_REFRESH_S:
                        lock.reacquire()  # raises if another build took over
                        writer.keep_alive()
                        touched = now
                    if on_progress and now - reported >= self.progress_every_s:
                        on_progress(BuildProgress(body.count, estimate, now - started))
                        reported = now
                for chunk in body.finish():
                    writer.write(chunk)
                if not lock.owned():
                    raise DumpError(f"shape {layout.shape_key}: lost the build lock")
                info = writer.publish(body.trailer(time.time()))
            except BaseException:
                writer.abort()
                raise
        finally:
            await rows.close()
        seconds = time.monotonic() - started
        if on_progress:
            on_progress(BuildProgress(body.count, body.count, seconds))
        log.info("shape %s: dump %s, %d rows, %d bytes in %.1fs", layout.shape_key,
                 info.dump_id, body.count, body.body_bytes, seconds)
        return BuildResult("built", layout.shape_key, info.dump_id, body.count,
                           body.body_bytes, body.raw_bytes, seconds)


def build_dump(
    query: str,
    params: list[Any] | None = None,
    claims: dict[str, Any] | None = None,
    shape_key: str | None = None,
) -> dict[str, Any]:
    """RQ job: build a dump of the shape `query` + `params` as seen by `claims`.

    `shape_key` is the key the requester computed: a different one here means
    this worker's policies or schema differ from the gateway's, and a dump
    under another key would never be served.
    """
    context = JobContext.from_settings()
    reporter = BuildReporter(get_current_job(), shape_key or "?")
    reporter.started()
    try:
        shape, layout = context.shape(query, params, claims)
        if shape_key is not None:
            clear_pending(context.client, context.database, shape_key)
            if shape_key != layout.shape_key:
                raise WorkerError(
                    f"shape key {layout.shape_key} here, {shape_key} where the build was "
                    "requested: do the worker and the gateway use the same [policies]?"
                )
        if shape.inner_sets:
            raise WorkerError(
                f"shape {layout.shape_key} reads inner selects (IN (SELECT ...) in its query "
                "or policy): relational shapes are served live, never from a dump"
            )
        return DumpBuilder(context).build(shape, layout, reporter).to_json()
    except Exception as exc:
        reporter.failed(exc)
        raise
    finally:
        context.close()
