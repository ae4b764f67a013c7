"""A compiled `sync` subscription sends the very frames per-message execution sends.

Each transport serves the same subscriptions twice, compiled and executed (its
`compiled_sync` switch off); the frames a client receives, text for text, must
be equal: a snapshot with aliases, fragments and skipped fields, and errors
before the first message (a query error, a forbidden column).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from pgsift.middleware.gateway.strawberry_ws import ExpiringHandler
from pgsift.middleware.gateway.transport_ws import GraphQLTransportWS
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
DOCUMENT = """
subscription Live($query: String!, $params: JSON, $full: Boolean!) {
  live: sync(query: $query, params: $params) {
    __typename
    items: changes { op ...Row key @skip(if: $full) }
    at: cursor
    ... on SyncMessage { upToDate mustRefetch @include(if: $full) }
    types
  }
}
fragment Row on Change { row kind: __typename }
"""
SUBSCRIPTIONS = [
    {"query": "SELECT id, title, points FROM issues WHERE team_id = $1", "params": [1],
     "full": True},
    {"query": "SELECT id, title FROM issues WHERE team_id = 1", "full": False},
    {"query": "SELECT id FROM issues WHERE", "full": True},  # a query error
    {"query": "SELECT id, secret FROM issues WHERE team_id = 1", "full": True},  # forbidden
]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def frames(url: str) -> list[str]:
    """The frames of every subscription in turn, up to its `upToDate` or `complete`."""
    ws: ClientConnection = await websockets.connect(
        url, subprotocols=["graphql-transport-ws"]  # type: ignore[list-item]
    )
    out: list[str] = []
    try:
        await ws.send(json.dumps({"type": "connection_init",
                                  "payload": {"authorization": TEAM_1}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for number, variables in enumerate(SUBSCRIPTIONS):
            op_id = f"op{number}"
            payload = {"query": DOCUMENT, "variables": variables, "operationName": "Live"}
            await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
            while True:
                text = str(await ws.recv())
                out.append(text)
                message: dict[str, Any] = json.loads(text)
                data = (message.get("payload") or {}).get("data") or {}
                if message["type"] in ("complete", "error") or data.get("live", {}).get(
                    "upToDate"
                ):
                    break
            await ws.send(json.dumps({"id": op_id, "type": "complete"}))
    finally:
        await ws.close()
    return out


async def test_compiled_frames_equal_executed_frames(
    database_url: str, redis_url: str, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await execute(database_url, ISSUES_SCHEMA)
    await execute(
        database_url,
        "INSERT INTO issues (id, team_id, title, points) SELECT i, 1 + i % 2, 'issue ' || i,"
        " i * 1.5 FROM generate_series(1, 40) i",
    )
    settings = gateway_settings(database_url, redis_url, gateway_max_message_bytes=600)
    seen = {}
    for compiled in (True, False):
        monkeypatch.setattr(ExpiringHandler, "compiled_sync", compiled)
        monkeypatch.setattr(GraphQLTransportWS, "compiled_sync", compiled)
        async with serve(settings, **app_options(transport)) as url:
            seen[compiled] = await frames(url)
    assert seen[True] == seen[False]
    kinds = [json.loads(f)["type"] for f in seen[True]]
    assert kinds.count("next") >= 5  # several snapshot messages, upToDate, two errors
    assert len([f for f in seen[True] if '"errors"' in f or '"type":"error"' in f]) == 2
