"""Shared snapshots read many shapes in one round trip (a pipeline) and serve the
connections that ask in turn: a failing statement, or more than one shape too big to
hold in one batch, leaves the others served right, in a later transaction if need be.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import psycopg

from pgsift.middleware.bootstrap.connections import SnapshotConnections
from pgsift.middleware.bootstrap.shared import HeldRows, SharedSnapshots
from pgsift.middleware.bootstrap.sources import LiveRows, RowQuery
from pgsift.middleware.catalog import load_catalog
from pgsift.subscriptions.shape import Shape
from tests.middleware.gateway import test_handoff
from tests.middleware.gateway.test_handoff import Parts

parts = test_handoff.parts  # the fixture: sessions wired as the gateway wires them

TEAM_QUERY = "SELECT id, title FROM issues WHERE team_id = $1"


def team_query(parts: Parts, team: int) -> RowQuery:
    with psycopg.connect(parts.database_url) as conn:
        catalog = load_catalog(conn)
    return RowQuery.of_shape(Shape.parse(TEAM_QUERY, params=[team], catalog=catalog))


async def ids(source: LiveRows) -> list[int]:
    try:
        return sorted([int(row["id"]) async for rows in source.rows() for row in rows])
    finally:
        await source.close()


async def test_a_failing_read_and_a_second_big_shape_leave_the_others_served(
    parts: Parts,
) -> None:
    snapshots = SharedSnapshots(
        SnapshotConnections(parts.pool, busy_after_s=10.0), parts.retention, held_rows=1
    )
    big, small = team_query(parts, 1), team_query(parts, 2)  # two rows, one row
    failing = replace(small, sql=f"SELECT * FROM ({small.sql}) AS q WHERE 1 / 0 = 1")
    results = await asyncio.gather(
        snapshots.open(big), snapshots.open(big), snapshots.open(failing),
        snapshots.open(small), return_exceptions=True,
    )
    first, second, error, held = results
    assert isinstance(error, psycopg.errors.DivisionByZero)
    assert isinstance(first, LiveRows) and isinstance(second, LiveRows)
    assert isinstance(held, HeldRows)
    # The second big one took a transaction of its own (the first kept its own).
    assert first.read is not second.read
    assert [await ids(first), await ids(second), await ids(held)] == [[1, 3], [1, 3], [2]]


async def test_owners_are_served_in_turn(parts: Parts) -> None:
    snapshots = SharedSnapshots(
        SnapshotConnections(parts.pool, busy_after_s=10.0), parts.retention
    )
    loop = asyncio.get_running_loop()
    query = team_query(parts, 2)
    requests = [("busy", loop.create_future()) for _ in range(4)]
    requests.insert(2, ("quiet", loop.create_future()))
    for owner, future in requests:
        snapshots._push(owner, (query, future))
    taken = snapshots._take(3)
    # The busy connection's first, then the quiet one's, though it asked after two more.
    assert [r[1] for r in taken] == [requests[0][1], requests[2][1], requests[1][1]]
    rest = snapshots._take(10)
    assert [r[1] for r in rest] == [requests[3][1], requests[4][1]]


async def test_pipelined_reads_give_each_shape_its_rows(parts: Parts) -> None:
    snapshots = SharedSnapshots(
        SnapshotConnections(parts.pool, busy_after_s=10.0), parts.retention
    )
    teams = [1, 2, 3, 2, 1] * 10
    sources = await asyncio.gather(*(snapshots.open(team_query(parts, t)) for t in teams))
    got = [await ids(source) for source in sources]
    assert got == [{1: [1, 3], 2: [2], 3: []}[t] for t in teams]
