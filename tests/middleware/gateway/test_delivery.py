"""Delivery never stalls silently: no session can starve the tailer."""

from __future__ import annotations

from typing import Any

import httpx

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
