"""A client that goes away is normal: the gateway logs no traceback for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import psycopg
import pytest
import websockets

from pgsift.middleware.gateway.client import SUBPROTOCOL, SYNC_SUBSCRIPTION
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    TRANSPORTS,
    app_options,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

TEAM_1 = token({"sub": "u1", "team_ids": [1]})
QUERY = "SELECT id, title FROM issues WHERE team_id = $1"
CLIENTS = 4


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clients_that_go_away_mid_stream_leave_no_traceback(
    database_url: str, redis_url: str, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    await execute(database_url, ISSUES_SCHEMA,
                  "INSERT INTO issues (id, team_id, title) SELECT i, 1, 'x'"
                  " FROM generate_series(1, 2000) i")
    settings = gateway_settings(database_url, redis_url, gateway_max_message_bytes=2048)
    with capturing(database_url, redis_url):
        async with serve(settings, **app_options(transport)) as url:
            writer = asyncio.create_task(_write(database_url))
            try:
                for client in range(CLIENTS):
                    # Alternately gone in the middle of the snapshot and while live.
                    await _subscribe_and_vanish(url, live=client % 2 == 1)
                await asyncio.sleep(1.0)  # the gateway notices as it sends the next message
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert noisy == [], [f"{r.name}: {r.getMessage()}" for r in noisy]


async def _subscribe_and_vanish(url: str, *, live: bool) -> None:
    ws = await websockets.connect(url, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": TEAM_1}}))
    await ws.recv()
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": SYNC_SUBSCRIPTION, "variables": {"query": QUERY, "params": [1]}}}))
    while True:
        message = json.loads(await ws.recv())
        if not live or message["payload"]["data"]["sync"]["upToDate"]:
            break
    ws.transport.abort()  # no close frame: the connection is just gone


async def _write(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for row_id in range(10_000, 20_000):
            await conn.execute("INSERT INTO issues (id, team_id, title) VALUES (%s, 1, 'w')",
                               [row_id])
            await asyncio.sleep(0.01)
