"""A typed `Query.<table>(where, limit)`: the shape's rows, once, from a snapshot.

The rows are read through the bootstrap seam (`LiveRows`, the snapshot every
`sync` and `/v1/bootstrap` starts from) on the gateway's snapshot pool, with
the shape's own SQL (the caller's policy ANDed in) ordered by primary key and
cut at the bound, so a read never holds more than `limit` rows. Its connection
comes from the gateway's one bounded set (`SnapshotConnections`), as every
snapshot's does.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import PoolTimeout

from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery
from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed.position import START
from pgsift.middleware.gateway.service import SyncService
from pgsift.subscriptions.errors import QueryError
from pgsift.subscriptions.shape import Shape


def bounded(limit: int | None, bound: int) -> int:
    """The rows a read may return: `limit`, at most `bound` (its default)."""
    if limit is None:
        return bound
    if limit < 0:
        raise QueryError(f"limit must be 0 or more, not {limit}")
    return min(limit, bound)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def read_rows(service: SyncService, shape: Shape, limit: int) -> list[dict[str, Any]]:
    """At most `limit` rows of `shape` in wire form, in primary-key order."""
    if limit == 0:
        return []
    sql, params = shape.to_sql()
    order = ", ".join(_quote(column) for column in shape.primary_key)
    # `limit` is an int checked above: it is part of the text, not client text.
    query = RowQuery(f"{sql} ORDER BY {order} LIMIT {int(limit)}", tuple(params), shape.wire)
    try:
        # A one-off read continues no feed: its position is never handed out.
        source = await LiveRows.open(service.connections.connection(), START, query)
    except PoolTimeout as exc:
        raise GatewayError(
            "the gateway is busy: no database connection for the read came free; "
            "try again later"
        ) from exc
    rows: list[dict[str, Any]] = []
    try:
        async for batch in source.rows():
            rows.extend(batch)
    finally:
        await source.close()
    return rows
