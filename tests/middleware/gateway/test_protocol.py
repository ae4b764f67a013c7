"""graphql-transport-ws as the reference client expects it: every close code, auth, caps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pgsift.middleware.gateway.client import SYNC_SUBSCRIPTION, SyncConnection
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    TRANSPORTS,
    app_options,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

GOOD = token({"sub": "u1", "team_ids": [1]})
SUBSCRIBE = {
    "query": SYNC_SUBSCRIPTION,
    "variables": {"query": "SELECT id, title FROM issues WHERE team_id = 1"},
}


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def url(database_url: str, redis_url: str, transport: str) -> AsyncIterator[str]:
    await execute(database_url, ISSUES_SCHEMA)
    settings = gateway_settings(
        database_url,
        redis_url,
        gateway_connection_init_timeout_s=0.3,
        gateway_max_subscriptions_per_connection=2,
    )
    async with serve(settings, **app_options(transport)) as served:
        yield served


async def connect(url: str, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(url, subprotocols=["graphql-transport-ws"], **kwargs)  # type: ignore[list-item]


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    assert ws.close_code is not None
    return ws.close_code


async def init(ws: ClientConnection, authorization: str | None = GOOD) -> dict[str, Any]:
    payload = {} if authorization is None else {"authorization": authorization}
    await send(ws, {"type": "connection_init", "payload": payload})
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


async def test_4408_when_connection_init_does_not_arrive(url: str) -> None:
    ws = await connect(url)
    assert await close_code(ws) == 4408


async def test_4429_on_a_second_init(url: str) -> None:
    ws = await connect(url)
    assert (await init(ws))["type"] == "connection_ack"
    await send(ws, {"type": "connection_init", "payload": {}})
    assert await close_code(ws) == 4429


async def test_4401_on_subscribe_before_ack(url: str) -> None:
    ws = await connect(url)
    await send(ws, {"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
    assert await close_code(ws) == 4401


async def test_4409_on_a_duplicate_operation_id(url: str) -> None:
    ws = await connect(url)
    await init(ws)
    await send(ws, {"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
    await send(ws, {"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
    assert await close_code(ws) == 4409


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"type": "nonsense"}),
        json.dumps({"id": "1"}),
        json.dumps({"type": "connection_init", "payload": "not an object"}),
    ],
)
async def test_4400_on_an_invalid_message(url: str, message: str) -> None:
    ws = await connect(url)
    await ws.send(message)
    assert await close_code(ws) == 4400


async def test_4400_on_a_subscribe_that_is_not_graphql(url: str) -> None:
    ws = await connect(url)
    await init(ws)
    await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": "{{{"}})
    assert await close_code(ws) == 4400


@pytest.mark.parametrize(
    "authorization",
    [
        None,  # anonymous access is off
        "Bearer not-a-jwt",
        "Basic dXNlcjpwdw==",
        token({"team_ids": [1]}, secret="some-other-secret-of-at-least-32-bytes"),
        token({"team_ids": [1]}, expires_in=-60),
    ],
    ids=["missing", "garbage", "not-bearer", "wrong-signature", "expired"],
)
async def test_4403_when_the_token_is_rejected(url: str, authorization: str | None) -> None:
    ws = await connect(url)
    payload = {} if authorization is None else {"authorization": authorization}
    await send(ws, {"type": "connection_init", "payload": payload})
    assert await close_code(ws) == 4403


async def test_the_http_authorization_header_is_accepted(url: str) -> None:
    conn = await SyncConnection.connect(url, headers={"Authorization": GOOD})
    messages = conn.sync("SELECT id FROM issues WHERE team_id = 1")
    first = await anext(aiter(messages))
    assert first["upToDate"] and first["cursor"]
    await conn.close()


async def test_anonymous_only_when_configured(
    database_url: str, redis_url: str, transport: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA)
    settings = gateway_settings(
        database_url, redis_url, auth={"anonymous": True, "anonymous_claims": {"team_ids": [3]}}
    )
    async with serve(settings, **app_options(transport)) as served:
        conn = await SyncConnection.connect(served)
        first = await anext(aiter(conn.sync("SELECT id FROM issues WHERE team_id = 3")))
        assert first["upToDate"]
        await conn.close()


async def test_ping_pong(url: str) -> None:
    ws = await connect(url)
    await init(ws)
    await send(ws, {"type": "ping"})
    assert json.loads(await ws.recv()) == {"type": "pong"}
    await ws.close()


async def test_subscriptions_per_connection_are_capped(url: str) -> None:
    ws = await connect(url)
    await init(ws)
    for op_id in ("1", "2", "3"):
        await send(ws, {"id": op_id, "type": "subscribe", "payload": SUBSCRIBE})
    replies = [json.loads(await ws.recv()) for _ in range(3)]
    errors = [r for r in replies if r["type"] == "error"]
    assert [e["id"] for e in errors] == ["3"]
    assert "limit" in errors[0]["payload"][0]["message"]
    await ws.close()
