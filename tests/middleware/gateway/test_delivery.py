"""Delivery never stalls silently: no session can starve the tailer, and a tailer that
falls behind the feed turns `/healthz` red with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway import service as service_module
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.client import SyncConnection
from pgsift.middleware.gateway.service import SyncService
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import eventually, gateway_settings, serving
from tests.middleware.gateway.pgrows import execute
from tests.middleware.gateway.test_sync import QUERY, TEAM_1, Follower, converged, issues

__all__ = ["issues"]  # the fixture


async def health(url: str) -> tuple[int, dict[str, Any]]:
    base = url.replace("ws://", "http://").removesuffix("/graphql")
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/healthz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def metric(url: str, name: str) -> float:
    base = url.replace("ws://", "http://").removesuffix("/graphql")
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    values = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(values[0])


async def test_delivery_goes_on_while_sessions_hold_every_pooled_connection(
    issues: str, redis_url: str
) -> None:
    settings = gateway_settings(issues, redis_url)
    app = create_app(settings)
    service: SyncService = app.state.service
    with capturing(issues, redis_url):
        async with serving(app, settings) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            follower = Follower(conn.sync(QUERY, [1]))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            pool: Any = service.reader.client.connection_pool
            held = [await pool.get_connection() for _ in range(service_module.REDIS_CONNECTIONS)]
            try:
                await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (40, 1, 'x')")
                await eventually(lambda: converged(issues, follower, [1]), "delivered")
                status, body = await health(url)
                assert status == 200, body
            finally:
                for connection in held:
                    await pool.release(connection)
            await follower.stop()


class GatedObserver:
    """Stands in for the batch loader; the tailer waits on it while its gate is shut."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()

    async def observe(self, entry: FeedEntry) -> None:
        await self.gate.wait()

    def forget_all(self) -> None:
        pass


async def test_a_stalled_tailer_turns_healthz_red_with_the_reason(
    issues: str, redis_url: str
) -> None:
    settings = gateway_settings(issues, redis_url, gateway_max_feed_lag_s=0.5)
    observer = GatedObserver()
    app = create_app(settings, loader=observer, batch_loader=False)
    with capturing(issues, redis_url):
        async with serving(app, settings) as url:

            async def healthy() -> bool:
                return (await health(url))[0] == 200

            await eventually(healthy, "healthy")
            _, body = await health(url)
            assert body["status"] == "ok"
            assert [c["name"] for c in body["checks"]] == [
                "postgres", "redis", "feed tailer", "feed lag", "feed freshness",
                "snapshot connections",
            ]
            assert all(c["ok"] and c["reason"] is None for c in body["checks"])
            # Something the tailer waits on never answers; Redis and Postgres are fine.
            observer.gate.clear()
            try:
                for n in range(3):
                    await execute(issues, f"INSERT INTO issues (id, team_id, title) VALUES"
                                          f" ({50 + n}, 1, 'x')")

                async def red() -> bool:
                    status, body = await health(url)
                    lag = next(c for c in body["checks"] if c["name"] == "feed lag")
                    return status == 503 and not lag["ok"] and "behind" in lag["reason"]

                await eventually(red, "/healthz says the tailer is behind")
                # The first entry is the one the tailer is stuck in.
                assert await metric(url, "pgsift_feed_entries_behind") == 3
                assert await metric(url, "pgsift_feed_lag_seconds") > 0.5
            finally:
                observer.gate.set()
            await eventually(healthy, "healthy again")
            assert await metric(url, "pgsift_feed_entries_behind") == 0
