"""A `sync` of a relational shape never starts from a dump, even a fresh one.

A dump of "the issues of u1's teams" built before u1 left team 1 still holds
team 1's issues, and nothing in it says so. Real capture, Redis, gateway and
dump store; Postgres is the oracle.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pgsift.middleware.bootstrap.finder import fresh_dump
from pgsift.middleware.gateway.client import LocalCopy, SyncConnection
from pgsift.workers.build import DumpBuilder
from pgsift.workers.context import JobContext
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected

MEMBERSHIPS = """
CREATE TABLE memberships (id int PRIMARY KEY, team_id int, user_id text);
ALTER TABLE memberships REPLICA IDENTITY FULL;
INSERT INTO memberships VALUES (1, 1, 'u1'), (2, 3, 'u2');
INSERT INTO issues (id, team_id, title) VALUES
    (1, 1, 'one'), (2, 2, 'two'), (3, 2, 'three'), (4, 3, 'four');
"""
POLICIES = {
    "public.issues": {
        "columns": ["id", "team_id", "title", "status", "points"],
        "row": "team_id IN (SELECT team_id FROM memberships WHERE user_id = auth.sub)",
    },
    "public.memberships": {"columns": ["id", "team_id", "user_id"], "row": "user_id = auth.sub"},
}
QUERY = "SELECT id, team_id, title FROM issues"
ORACLE = (
    "SELECT id, team_id, title FROM issues WHERE "
    "team_id IN (SELECT team_id FROM memberships WHERE user_id = $1)"
)


async def test_sync_of_a_relational_shape_ignores_a_left_over_dump(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    settings = gateway_settings(database_url, redis_url, policies=POLICIES)
    with capturing(database_url, redis_url):
        # Built while u1 is in team 1 (as an older version would have kept one).
        context = JobContext.from_settings(settings)
        try:
            shape, layout = context.shape(QUERY, [], {"sub": "u1"})
            built = await asyncio.to_thread(DumpBuilder(context).build, shape, layout)
            assert built.rows == 1
            bounds = context.reader.bounds()
            assert fresh_dump(context.store, layout, max_age_s=3600, feed=bounds) is not None
        finally:
            context.close()
        # u1 leaves team 1 and joins team 2, in one transaction.
        await execute(database_url, "DELETE FROM memberships WHERE id = 1; "
                                    "INSERT INTO memberships VALUES (5, 2, 'u1')")
        copy = LocalCopy()
        async with serve(settings) as url, await SyncConnection.connect(
            url, authorization=token({"sub": "u1"})
        ) as conn:

            async def run() -> None:
                async for message in conn.sync(QUERY, []):
                    copy.apply(message)

            task = asyncio.create_task(run())
            try:
                await eventually(lambda: copy.up_to_date or task.done(), "up to date")
                want: dict[str, Any] = await expected(database_url, ORACLE, ["u1"])
                assert not copy.must_refetch
                assert copy.rows == want
                assert {row["title"] for row in copy.rows.values()} == {"two", "three"}
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
