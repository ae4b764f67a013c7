"""Shared snapshots: subscriptions that start together read their rows in one snapshot
transaction, each still getting exactly its rows and every later change once.

Driven as `test_handoff` drives sessions (real Postgres, capture, Redis, tailer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from psycopg_pool import PoolTimeout

from pgsift.middleware.bootstrap.connections import SnapshotConnections
from pgsift.middleware.bootstrap.shared import SharedSnapshots
from pgsift.middleware.bootstrap.snapshot import snapshot_pool
from pgsift.middleware.bootstrap.sources import RowQuery
from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.gateway.messages import SyncMessage
from pgsift.subscriptions.shape import Shape
from tests.middleware.gateway import test_handoff
from tests.middleware.gateway.test_handoff import (
    Parts,
    commit,
    live_marker,
    ops,
    until_up_to_date,
)

parts = test_handoff.parts  # the fixture: sessions wired as the gateway wires them

TEAM_QUERY = "SELECT id, title FROM issues WHERE team_id = $1"


class HookedSnapshots(SharedSnapshots):
    """Runs `hook` between recording the position and taking each snapshot."""

    hook: Callable[[FeedPosition], Awaitable[None]]

    async def before_snapshot(self, position: FeedPosition) -> None:
        await self.hook(position)


def shared(parts: Parts, **options: int) -> SharedSnapshots:
    return SharedSnapshots(
        SnapshotConnections(parts.pool, busy_after_s=10.0), parts.retention, **options
    )


async def test_a_commit_between_position_and_a_shared_snapshot_is_not_sent_again(
    parts: Parts,
) -> None:
    snapshots = HookedSnapshots(SnapshotConnections(parts.pool, busy_after_s=10.0),
                                parts.retention)

    async def between(position: FeedPosition) -> None:
        xid = await commit(parts.database_url,
                           "INSERT INTO issues (id, team_id, title) VALUES (20, 1, 'between')")
        entry = await parts.entry_of(xid)
        assert entry.id > position  # after the recorded position ...
        await parts.tailed(entry)  # ... and in the catch-up the session will read

    snapshots.hook = between
    messages = parts.session(snapshots=snapshots).messages()
    first = await until_up_to_date(messages)
    assert first[-1].up_to_date
    assert sorted(ops(first)) == [("INSERT", 1), ("INSERT", 3), ("INSERT", 20)]
    assert await live_marker(parts, messages, 21) == [("INSERT", 21)]
    await messages.aclose()  # type: ignore[attr-defined]


async def test_subscriptions_sharing_snapshots_each_get_their_rows_and_changes(
    parts: Parts,
) -> None:
    # At most one row held per shape: team 1 (two rows) takes its transaction over and
    # reads through a cursor; team 2 (one row) and team 3 (none) are held.
    snapshots = shared(parts, held_rows=1)
    with psycopg.connect(parts.database_url) as conn:
        catalog = load_catalog(conn)
    streams: list[AsyncIterator[SyncMessage]] = [
        parts.session(
            shape=Shape.parse(TEAM_QUERY, params=[team], catalog=catalog), snapshots=snapshots
        ).messages()
        for team in (1, 2, 3, 2)
    ]
    firsts = await asyncio.gather(*(until_up_to_date(m) for m in streams))
    assert [sorted(ops(first)) for first in firsts] == [
        [("INSERT", 1), ("INSERT", 3)], [("INSERT", 2)], [], [("INSERT", 2)],
    ]
    assert all(first[-1].up_to_date for first in firsts)
    # Live from there on, once each: a marker of team 1 reaches the first stream only.
    assert await live_marker(parts, streams[0], 30) == [("INSERT", 30)]
    await commit(parts.database_url, "UPDATE issues SET title = 'moved' WHERE id = 2")
    for stream in (streams[1], streams[3]):
        message = await anext(stream)
        assert ops([message]) == [("UPDATE", 2)]
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    assert parts.pool.get_stats()["pool_available"] == parts.pool.get_stats()["pool_size"]


async def test_requests_fail_when_no_connection_comes_free_and_work_again_after(
    parts: Parts,
) -> None:
    pool = snapshot_pool(parts.database_url, max_size=1, wait_s=0.2)
    await pool.open()
    try:
        snapshots = SharedSnapshots(SnapshotConnections(pool, busy_after_s=10.0),
                                    parts.retention)
        query = RowQuery.of_shape(parts.shape)
        async with pool.connection():  # the only connection, held elsewhere
            waiting = [asyncio.create_task(snapshots.open(query)) for _ in range(3)]
            results = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(r, PoolTimeout) for r in results)
        source = await snapshots.open(query)
        batches = [rows async for rows in source.rows()]
        await source.close()
        assert sorted(int(row["id"]) for rows in batches for row in rows) == [1, 3]
    finally:
        await pool.close()
