"""A client gets the snapshot, then every later change, over a real websocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.retention import FeedRetention
from pgsift.middleware.gateway.client import LocalCopy, OperationError, SyncConnection, key_of
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

QUERY = "SELECT id, title, status FROM issues WHERE team_id = $1"
ORACLE = "SELECT id, title, status FROM issues WHERE team_id = %s"
TEAM_1 = token({"sub": "u1", "team_ids": [1, 2]})


class Follower:
    """Applies one subscription's messages to a LocalCopy in the background."""

    def __init__(self, messages: AsyncIterator[dict[str, Any]]) -> None:
        self.copy = LocalCopy()
        self.messages: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self._task = asyncio.create_task(self._run(messages))

    async def _run(self, messages: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for message in messages:
                self.messages.append(message)
                self.copy.apply(message)
        finally:
            self.done.set()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def converged(database_url: str, follower: Follower, params: list[Any]) -> bool:
    want = await expected(database_url, ORACLE, params)
    return follower.copy.up_to_date and follower.copy.rows == want


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title)"
        " VALUES (1, 1, 'one'), (2, 2, 'two'), (3, 1, 'three')",
    )
    return database_url


async def test_snapshot_then_live_changes(issues: str, redis_url: str) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            first = follower.messages
            assert [m["upToDate"] for m in first] == [False, True]
            assert {c["op"] for c in first[0]["changes"]} == {"INSERT"}
            assert follower.copy.cursor is not None
            assert await converged(issues, follower, [1])

            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (4, 1, 'four')")
            await execute(issues, "UPDATE issues SET title = 'uno' WHERE id = 1")
            await execute(issues, "UPDATE issues SET team_id = 2 WHERE id = 3")  # moves out
            await execute(issues, "UPDATE issues SET team_id = 1 WHERE id = 2")  # moves in
            await execute(issues, "UPDATE issues SET id = 10 WHERE id = 4")  # key change
            await execute(
                issues,
                "DELETE FROM issues WHERE id = 1",
                "INSERT INTO issues (id, team_id, title, status) VALUES (5, 1, 'five', 'done')",
            )
            await eventually(lambda: converged(issues, follower, [1]), "converged")
            live = follower.messages[2:]
            assert all(m["upToDate"] and m["cursor"] for m in live)
            ops = [[c["op"] for c in m["changes"]] for m in live]
            assert ops == [
                ["INSERT"], ["UPDATE"], ["DELETE"], ["INSERT"], ["DELETE", "INSERT"],
                ["DELETE", "INSERT"],
            ]
            await follower.stop()


async def test_resume_from_cursor_sends_only_later_changes(issues: str, redis_url: str) -> None:
    settings = gateway_settings(issues, redis_url)
    with capturing(issues, redis_url):
        async with serve(settings) as url:
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                follower = Follower(conn.sync(QUERY, [1]))
                await eventually(lambda: follower.copy.up_to_date, "upToDate")
                await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (6, 1, '6')")
                await eventually(lambda: converged(issues, follower, [1]), "converged")
                await follower.stop()
            copy = follower.copy
            await execute(issues, "UPDATE issues SET title = 'changed' WHERE id = 6")
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (7, 2, 'other')")
            await execute(issues, "DELETE FROM issues WHERE id = 3")
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                resumed = Follower(conn.sync(QUERY, [1], cursor=copy.cursor))
                resumed.copy.rows = dict(copy.rows)
                await eventually(lambda: converged(issues, resumed, [1]), "resumed")
                sent = [c["op"] for m in resumed.messages for c in m["changes"]]
                assert sent == ["UPDATE", "DELETE"]
                await resumed.stop()


async def test_trimmed_cursor_gets_must_refetch(issues: str, redis_url: str) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url:
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                follower = Follower(conn.sync(QUERY, [1]))
                await eventually(lambda: follower.copy.up_to_date, "upToDate")
                await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (8, 1, 'x')")
                await eventually(lambda: converged(issues, follower, [1]), "converged")
                await follower.stop()
            old_cursor = follower.copy.cursor
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (9, 1, 'y')")
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (11, 1, 'z')")
            client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
            stream = keys.feed_stream(keys.database_of(issues))
            await eventually(lambda: _length_at_least(client, stream, 3), "feed has entries")
            newest = (await client.xrevrange(stream, count=1))[0][0].decode()
            await client.aclose()  # type: ignore[attr-defined]
            trim(redis_url, stream, newest)  # only the newest entry stays
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                messages = [m async for m in conn.sync(QUERY, [1], cursor=old_cursor)]
            assert [m["mustRefetch"] for m in messages] == [True]


async def test_a_cursor_of_the_empty_feed_stays_valid(issues: str, redis_url: str) -> None:
    """A cursor handed out before the feed had any entry misses nothing once it has
    some (nothing was trimmed), whether plain or a bootstrap's `<position>@<snapshot>`."""
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url:
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                follower = Follower(conn.sync(QUERY, [1]))
                await eventually(lambda: follower.copy.up_to_date, "upToDate")
                await follower.stop()
            copy = follower.copy
            assert copy.cursor == "0-0"  # the rows predate capture: an empty feed
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (12, 1, 'a')")
            await execute(issues, "UPDATE issues SET title = 'b' WHERE id = 1")
            await feed_has_entries(redis_url, issues)
            for cursor in (copy.cursor, f"{copy.cursor}@1:1:"):
                async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                    resumed = Follower(conn.sync(QUERY, [1], cursor=cursor))
                    resumed.copy.rows = dict(copy.rows)
                    await eventually(partial(converged, issues, resumed, [1]), "resumed")
                    assert not any(m["mustRefetch"] for m in resumed.messages)
                    await resumed.stop()


def trim(redis_url: str, stream: str, minid: str) -> None:
    """Trim the feed as the trim job does (through the retention marker)."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    try:
        FeedRetention(client, stream).trim(minid)
    finally:
        client.close()


async def feed_has_entries(redis_url: str, database_url: str) -> None:
    """Wait for capture to append at least one entry."""
    client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    stream = keys.feed_stream(keys.database_of(database_url))
    await eventually(lambda: _length_at_least(client, stream, 1), "feed has an entry")
    await client.aclose()  # type: ignore[attr-defined]


async def _length_at_least(client: redis.asyncio.Redis[bytes], stream: str, n: int) -> bool:
    return int(await client.xlen(stream)) >= n


async def test_truncate_and_schema_change_get_must_refetch(issues: str, redis_url: str) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            await execute(issues, "TRUNCATE issues")
            await follower.done.wait()
            assert follower.messages[-1]["mustRefetch"]

            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate again")
            await execute(
                issues,
                "ALTER TABLE issues ADD COLUMN extra int",
                "INSERT INTO issues (id, team_id, title, extra) VALUES (20, 1, 'x', 1)",
            )
            await follower.done.wait()
            assert follower.messages[-1]["mustRefetch"]


async def test_query_errors_do_not_close_the_connection(issues: str, redis_url: str) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            with pytest.raises(OperationError) as bad:
                _ = [m async for m in conn.sync("SELECT id FROM issues WHERE nope = 1")]
            error = bad.value.errors[0]
            assert "nope" in error["message"]
            assert error["extensions"]["position"] == "SELECT id FROM issues WHERE ".__len__()

            with pytest.raises(OperationError) as forbidden:
                _ = [m async for m in conn.sync("SELECT id, secret FROM issues")]
            assert "secret" in forbidden.value.errors[0]["message"]

            with pytest.raises(OperationError):
                _ = [m async for m in conn.sync(QUERY, [1], cursor="not-a-cursor")]

            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: converged(issues, follower, [1]), "still works")
            await follower.stop()


async def test_a_full_send_queue_ends_with_must_refetch(issues: str, redis_url: str) -> None:
    settings = gateway_settings(issues, redis_url, gateway_send_queue=1)
    with capturing(issues, redis_url):
        async with serve(settings) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            # Two subscriptions share the connection's queue of one transaction: the
            # tailer hands one transaction to both before either can send it.
            first = Follower(conn.sync(QUERY, [1]))
            second = Follower(conn.sync(QUERY, [1]))
            await eventually(
                lambda: first.copy.up_to_date and second.copy.up_to_date, "both upToDate"
            )
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (30, 1, 'x')")
            await eventually(lambda: first.done.is_set() or second.done.is_set(), "one ended")
            ended = first if first.done.is_set() else second
            assert ended.messages[-1]["mustRefetch"]
            await first.stop()
            await second.stop()


async def test_health_and_metrics(issues: str, redis_url: str) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            base = url.replace("ws://", "http://").removesuffix("/graphql")
            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (40, 1, 'x')")
            await eventually(lambda: converged(issues, follower, [1]), "converged")
            async with httpx.AsyncClient() as http:

                async def healthy() -> bool:
                    return (await http.get(f"{base}/healthz")).status_code == 200

                await eventually(healthy, "healthy (capture's heartbeat seen)")
                metrics = (await http.get(f"{base}/metrics")).text
            assert "pgsift_gateway_connections 1.0" in metrics
            assert "pgsift_gateway_subscriptions 1.0" in metrics
            assert "pgsift_gateway_shapes 1.0" in metrics
            assert "pgsift_gateway_routed_changes_total 1.0" in metrics
            # The snapshot the sync started with: counted and timed, once.
            assert snapshot_line("snapshots_total", "postgres", 1.0) in metrics
            assert snapshot_line("snapshot_seconds_count", "postgres", 1.0) in metrics
            assert snapshot_line("snapshots_total", "dump", 0.0) in metrics
            await follower.stop()


async def test_bootstrap_over_http_then_sync_from_its_cursor(issues: str, redis_url: str) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url:
            base = url.replace("ws://", "http://").removesuffix("/graphql")
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (50, 1, 'a')")
            await feed_has_entries(redis_url, issues)
            async with httpx.AsyncClient() as http:
                response = await http.get(
                    f"{base}/v1/bootstrap",
                    params={"query": QUERY, "params": "[1]"},
                    headers={"Authorization": TEAM_1},
                )
            assert response.status_code == 200
            lines = [json.loads(line) for line in response.text.splitlines()]
            assert lines[-1]["type"] == "end"
            copy = LocalCopy()
            copy.rows = {key_of({"id": r["row"]["id"]}): r["row"] for r in lines[1:-1]}
            await execute(issues, "UPDATE issues SET title = 'b' WHERE id = 50")
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (51, 1, 'c')")
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                follower = Follower(conn.sync(QUERY, [1], cursor=lines[-1]["cursor"]))
                follower.copy.rows = copy.rows
                await eventually(lambda: converged(issues, follower, [1]), "converged")
                await follower.stop()


async def test_the_batch_loader_is_mounted_and_kept_fresh_by_the_tailer(
    issues: str, redis_url: str
) -> None:
    with capturing(issues, redis_url):
        async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn, httpx.AsyncClient() as http:
            rows_url = url.replace("ws://", "http://").replace("/graphql", "/v1/rows")
            body = {"table": "issues", "keys": [1]}

            async def title() -> Any:
                response = await http.post(rows_url, json=body, headers={"Authorization": TEAM_1})
                assert response.status_code == 200, response.text
                return response.json()["rows"][0]["title"]

            assert await title() == "one"  # now cached by the loader
            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            await execute(issues, "UPDATE issues SET title = 'fresh' WHERE id = 1")
            await eventually(lambda: converged(issues, follower, [1]), "routed")
            # The tailer told the loader before routing the change to any client.
            assert await title() == "fresh"
            await follower.stop()


async def test_a_fresh_dump_is_the_snapshot_of_a_sync_without_cursor(
    issues: str, redis_url: str
) -> None:
    settings = gateway_settings(issues, redis_url)
    claims = {"sub": "u1", "team_ids": [1, 2]}
    with capturing(issues, redis_url):
        async with serve(settings) as url:
            # A feed position to start the dump from.
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (59, 2, 'x')")
            await feed_has_entries(redis_url, issues)
            context = JobContext.from_settings(settings)
            try:
                shape, layout = context.shape(QUERY, [1], claims)
                result = await asyncio.to_thread(DumpBuilder(context).build, shape, layout)
            finally:
                context.close()
            assert result.rows == 2
            # Missing from the dump: the sync continues the feed from the dump's cursor.
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (60, 1, 'new')")
            await execute(issues, "DELETE FROM issues WHERE id = 1")
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                follower = Follower(conn.sync(QUERY, [1]))
                await eventually(lambda: converged(issues, follower, [1]), "converged")
                snapshot_rows = {c["key"]["id"] for c in follower.messages[0]["changes"]}
                assert snapshot_rows == {"1", "3"}  # the dump's rows, not today's
                await follower.stop()
            base = url.replace("ws://", "http://").removesuffix("/graphql")
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{base}/metrics")).text
            assert snapshot_line("snapshots_total", "postgres", 0.0) in metrics
            assert snapshot_line("snapshots_total", "dump", 1.0) in metrics
            assert snapshot_line("snapshot_seconds_count", "dump", 1.0) in metrics


async def test_a_transaction_split_into_chunks_arrives_whole(issues: str, redis_url: str) -> None:
    values = ", ".join(f"({i}, {1 + i % 2}, 't{i}')" for i in range(100, 120))
    with capturing(issues, redis_url, capture_max_changes_per_entry="3"):
        async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            before = len(follower.messages)
            await execute(issues, f"INSERT INTO issues (id, team_id, title) VALUES {values}")
            await eventually(lambda: converged(issues, follower, [1]), "converged")
            client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
            stream = keys.feed_stream(keys.database_of(issues))
            assert int(await client.xlen(stream)) == 7  # 20 changes in chunks of 3
            await client.aclose()  # type: ignore[attr-defined]
            live = follower.messages[before:]
            assert len(live) == 1 and len(live[0]["changes"]) == 10
            await follower.stop()


def snapshot_line(name: str, source: str, value: float) -> str:
    """One sample of the snapshot metrics of `sync` subscriptions, as /metrics prints it."""
    return f'pgsift_gateway_{name}{{endpoint="sync",source="{source}"}} {value}'
