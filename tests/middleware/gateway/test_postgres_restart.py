"""After a Postgres restart the gateway's pooled connections are dead: none may reach a client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pgsift.middleware.bootstrap.snapshot import snapshot_pool
from pgsift.middleware.gateway.client import SyncConnection
from tests.conftest import PostgresServer
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

QUERY = "SELECT id, title FROM issues WHERE team_id = $1"
TEAM_1 = token({"sub": "u1", "team_ids": [1]})
CONCURRENT = 4  # snapshots at once, so that the pool holds several connections


async def first_message(conn: SyncConnection, cursor: str | None = None) -> dict[str, object]:
    async for message in conn.sync(QUERY, [1], cursor):
        return message
    raise AssertionError("the subscription ended without a message")


async def test_the_first_subscription_after_a_restart_gets_a_live_connection(
    database_url: str, redis_url: str, postgres_server: PostgresServer
) -> None:
    if postgres_server.embedded is None:
        pytest.skip("restarting needs the embedded Postgres")
    await execute(database_url, ISSUES_SCHEMA,
                  "INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'one')")
    with capturing(database_url, redis_url):
        # Only the pools are under test: capture's heartbeat may lag across the restart.
        settings = gateway_settings(database_url, redis_url, feed_stale_after_s=3600.0)
        async with serve(settings) as url:
            await restart_between_subscriptions(url, postgres_server)


async def restart_between_subscriptions(url: str, postgres_server: PostgresServer) -> None:
    assert postgres_server.embedded is not None
    async with httpx.AsyncClient() as http:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        connections = [
            await SyncConnection.connect(url, authorization=TEAM_1) for _ in range(CONCURRENT)
        ]
        try:
            before = await asyncio.gather(*(first_message(c) for c in connections))
            assert all(m["changes"] for m in before)

            async def healthy() -> bool:
                return (await http.get(f"{base}/healthz")).status_code == 200

            await eventually(healthy, "the gateway tailing the feed")

            await asyncio.to_thread(postgres_server.embedded.restart)

            # No retry, no wait: the pools throw dead connections away on checkout.
            health = await http.get(f"{base}/healthz")
            assert health.status_code == 200, health.text
            after = await asyncio.gather(*(first_message(c) for c in connections))
            assert [m["changes"] for m in after] == [m["changes"] for m in before]
        finally:
            for conn in connections:
                await conn.close()


async def test_a_pool_full_of_dead_connections_lends_a_live_one_at_once(
    database_url: str, postgres_server: PostgresServer
) -> None:
    """Each dead connection is dropped without the pool's reconnect backoff (1 s, 2 s, ...),
    which with eight of them would outlast any caller's timeout."""
    if postgres_server.embedded is None:
        pytest.skip("restarting needs the embedded Postgres")
    pool = snapshot_pool(database_url, max_size=8, wait_s=2.0)
    await pool.open()
    try:
        held = [await pool.getconn() for _ in range(8)]
        for conn in held:
            await pool.putconn(conn)
        await asyncio.to_thread(postgres_server.embedded.restart)
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await pool.close()
