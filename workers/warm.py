"""Cache warming: keep dumps of the configured and the most-bootstrapped shapes fresh.

A warm shape is rebuilt when it has no dump, when its newest dump is older
than its `every`, or sooner when enough changes touched its table since that
dump's feed position. `[[warm]]` tables of pgsift.toml declare shapes:

    [[warm]]
    query = "SELECT id, title, status FROM issues WHERE team_id = $1"
    params = [1]
    claims = { team_ids = [1] }     # optional: whose policies apply
    every = "5m"                    # optional: s, m, h, d; default dumps_warm_every_s

Relational shapes (inner selects in the query or the policy) are skipped with
a warning: they are served live, never from a dump (`build`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rq.job import Job

from pgsift.middleware.dumps.enqueue import enqueue_build, popular_specs
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.feed.position import FeedPosition
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import QueryError
from pgsift.workers.context import JobContext

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Feed entries read per round trip while counting changes since a dump.
SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class WarmShape:
    query: str
    params: tuple[Any, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)
    every_s: float = 300.0


@dataclass(frozen=True, slots=True)
class DueBuild:
    shape: WarmShape
    shape_key: str
    reason: str  # "no dump", "older than 5m", "12000 changes", "forced"


def parse_duration(value: str | float | int) -> float:
    """`"90"`, `"30s"`, `"5m"`, `"2h"`, `"1d"` or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ConfigError(f"bad duration {value!r}: use e.g. 30s, 5m, 2h, 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def configured_shapes(context: JobContext) -> list[WarmShape]:
    """The `[[warm]]` shapes of the settings."""
    default_every = context.settings.dumps_warm_every_s
    shapes = []
    for n, entry in enumerate(context.settings.warm):
        if not isinstance(entry.get("query"), str):
            raise ConfigError(f"[[warm]] entry {n + 1} has no `query`")
        params = entry.get("params", [])
        claims = entry.get("claims", {})
        if not isinstance(params, list) or not isinstance(claims, Mapping):
            raise ConfigError(f"[[warm]] entry {n + 1}: params must be a list, claims a table")
        every = parse_duration(entry.get("every", default_every))
        shapes.append(WarmShape(entry["query"], tuple(params), dict(claims), every))
    return shapes


def popular_shapes(context: JobContext, top: int | None = None) -> list[WarmShape]:
    """The most-bootstrapped shapes (the sorted set the gateway bumps)."""
    top = context.settings.dumps_warm_top if top is None else top
    return [
        WarmShape(spec["query"], tuple(spec["params"]), spec["claims"],
                  context.settings.dumps_warm_every_s)
        for _, spec in popular_specs(context.client, context.database, top)
    ]


def due_builds(context: JobContext, shapes: list[WarmShape], *, force: bool = False
               ) -> list[DueBuild]:
    """The shapes whose dump should be rebuilt now, and why."""
    catalog: Catalog = context.catalog()
    due: dict[str, DueBuild] = {}
    for warm in shapes:
        try:
            shape, layout = context.shape(query=warm.query, params=list(warm.params),
                                          claims=dict(warm.claims), catalog=catalog)
        except QueryError as exc:
            log.warning("warm shape %r skipped: %s", warm.query, exc)
            continue
        if shape.inner_sets:
            log.warning("warm shape %r skipped: it reads inner selects (in its query or "
                        "policy), and relational shapes are served live, never dumped",
                        warm.query)
            continue
        if layout.shape_key in due:
            continue
        reason = _reason(context, warm, layout.shape_key, layout.table, force)
        if reason:
            due[layout.shape_key] = DueBuild(warm, layout.shape_key, reason)
    return list(due.values())


def _reason(context: JobContext, warm: WarmShape, shape_key: str, table: str, force: bool
            ) -> str | None:
    if force:
        return "forced"
    dumps = context.store.dumps(shape_key)
    if not dumps:
        return "no dump"
    newest = dumps[0]
    if newest.age_s >= warm.every_s:
        return f"older than {warm.every_s:g}s"
    threshold = context.settings.dumps_warm_changes
    changed = changes_since(context, newest.header.feed_position, table, limit=threshold)
    if changed >= threshold:
        return f"{changed} changes"
    return None


def changes_since(context: JobContext, position: FeedPosition, table: str, *, limit: int) -> int:
    """Changes to `table` in the feed after `position`, counting up to `limit`."""
    count = 0
    cursor = position
    while count < limit:
        entries = context.reader.read_after(cursor, count=SCAN_BATCH)
        if not entries:
            break
        for entry in entries:
            count += sum(1 for change in entry.changes if change.table == table)
            count += 1 if table in entry.schema_changes else 0
        cursor = entries[-1].id
    return count


def enqueue_warm(context: JobContext, *, force: bool = False) -> list[tuple[DueBuild, Job]]:
    """Enqueue builds of every due warm shape (configured first, then popular)."""
    shapes = configured_shapes(context) + popular_shapes(context)
    enqueued = []
    for build in due_builds(context, shapes, force=force):
        job = enqueue_build(
            context.client,
            context.database,
            jobs=context.jobs_client,
            shape_key=build.shape_key,
            query=build.shape.query,
            params=list(build.shape.params),
            claims=dict(build.shape.claims),
            timeout_s=context.settings.dumps_build_timeout_s,
            force=force,
        )
        if job is not None:
            log.info("warm: enqueued %s (%s): %s, params %s", build.shape_key, build.reason,
                     build.shape.query, list(build.shape.params))
            enqueued.append((build, job))
    return enqueued


def warm(force: bool = False) -> list[str]:
    """RQ job: enqueue the due warm builds; returns their job ids."""
    context = JobContext.from_settings()
    try:
        return [job.id for _, job in enqueue_warm(context, force=force)]
    finally:
        context.close()
