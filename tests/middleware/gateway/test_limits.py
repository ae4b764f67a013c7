"""Security limits of the gateway: token expiry, input sizes, masked errors, snapshot
connections, memory per transaction, and the no-policies warning."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pgsift.middleware.bootstrap.snapshot import snapshot_pool
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.client import SYNC_SUBSCRIPTION, OperationError, SyncConnection
from pgsift.middleware.gateway.reassembly import TxAssembler
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.shape import Shape
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
QUERY = "SELECT id, title FROM issues WHERE team_id = 1"


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(database_url, ISSUES_SCHEMA)
    return database_url


async def connect(url: str, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(url, subprotocols=["graphql-transport-ws"], **kwargs)  # type: ignore[list-item]


async def init(ws: ClientConnection, authorization: str = TEAM_1) -> None:
    init = {"type": "connection_init", "payload": {"authorization": authorization}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"


async def subscribe(ws: ClientConnection, query: str, params: Any = None, op_id: str = "1") -> None:
    variables = {"query": query, "params": params}
    payload = {"query": SYNC_SUBSCRIPTION, "variables": variables}
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))


async def reply(ws: ClientConnection, op_id: str) -> list[dict[str, Any]]:
    """The errors the server answers operation `op_id` with (`next` or `error`)."""
    while True:
        message = json.loads(await ws.recv())
        if message.get("id") == op_id and message["type"] in ("next", "error"):
            payload = message["payload"]
            errors: list[dict[str, Any]]
            errors = payload if isinstance(payload, list) else payload["errors"]
            return errors


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code


async def errors_of(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
        with pytest.raises(OperationError) as failed:
            _ = [m async for m in conn.sync(query, params)]
        return failed.value.errors


# 1. Tokens expire on open connections.


async def test_an_open_subscription_is_closed_4403_when_its_token_expires(
    issues: str, redis_url: str, transport: str
) -> None:
    async with serve(gateway_settings(issues, redis_url), **app_options(transport)) as url:
        ws = await connect(url)
        # `exp` is whole seconds: the token lives 3 to 4 s, time enough for the first reply.
        await init(ws, token({"team_ids": [1]}, expires_in=4))
        await subscribe(ws, QUERY)
        first = json.loads(await ws.recv())
        assert first["type"] == "next" and first["payload"]["data"]["sync"]["upToDate"]
        assert await close_code(ws) == 4403


# 3. Snapshot connections: bounded wait, timeouts in Postgres.


async def test_snapshot_connections_carry_timeouts(database_url: str) -> None:
    pool = snapshot_pool(database_url, max_size=1, statement_timeout_s=7, idle_timeout_s=9)
    await pool.open()
    try:
        async with pool.connection() as conn:
            shown = [
                (await (await conn.execute(f"SHOW {name}")).fetchone() or ("",))[0]
                for name in ("statement_timeout", "idle_in_transaction_session_timeout")
            ]
        assert shown == ["7s", "9s"]
    finally:
        await pool.close()


async def test_a_client_that_never_reads_does_not_hang_the_next_one(
    issues: str, redis_url: str
) -> None:
    # ~25 MB of rows: far more than the socket buffers between gateway and client.
    await execute(
        issues,
        "INSERT INTO issues (id, team_id, title)"
        " SELECT i, 1, repeat('x', 500) FROM generate_series(1, 50000) AS i",
    )
    settings = gateway_settings(
        issues, redis_url, gateway_snapshot_connections=1, gateway_snapshot_wait_s=0.5
    )
    async with serve(settings) as url:
        # Without permessage-deflate: compressed, these rows are a few hundred kB and
        # could all fit in the socket buffers, ending the snapshot (a flaky test).
        stalled = await connect(url, max_queue=1, max_size=None, compression=None)
        await init(stalled)
        await subscribe(stalled, QUERY)
        assert json.loads(await stalled.recv())["type"] == "next"  # its snapshot is under way
        # ... and it reads no more: its snapshot keeps the only connection.
        errors = await errors_of(url, "SELECT id FROM issues WHERE team_id = 1")
        assert "busy" in errors[0]["message"]
        assert errors[0]["extensions"]["code"] == "GatewayError"
        await stalled.close()


# 4. Memory per transaction.


@dataclass(frozen=True)
class Listener:
    name: str
    shape: Shape


def test_the_assembler_caps_the_changes_held_per_listener() -> None:
    catalog = Catalog.from_dict(
        {"public.t": {"columns": {"id": "int8", "team": "int4"}, "primary_key": ["id"]}}
    )
    index: RoutingIndex[Listener] = RoutingIndex()
    listeners = {}
    for name, team in (("small", 1), ("big", 2)):
        shape = Shape.parse(
            f"SELECT id FROM t WHERE team = {team}", params=[], catalog=catalog, claims={},
            policies={},
        )
        listeners[name] = Listener(name, shape)
        index.add(shape, listeners[name])
    assembler = TxAssembler(index, lambda table: (), max_changes=3)

    def chunk(ids: range, team: int, last: bool) -> FeedEntry:
        changes = tuple(
            Change("public.t", "insert", {"id": i}, {"id": i, "team": team}, None)
            for i in ids
        )
        return FeedEntry(10, 5, datetime.now(UTC), changes, last=last)

    assert assembler.add(chunk(range(0, 2), 2, last=False)) is None
    assert assembler.add(chunk(range(2, 4), 2, last=False)) is None  # 4 > 3: dropped
    routed = assembler.add(chunk(range(10, 13), 1, last=True))
    assert routed is not None
    big, small = routed[listeners["big"]], routed[listeners["small"]]
    assert big.refetch and big.changes == []
    assert not small.refetch and len(small.changes) == 3


async def test_a_transaction_past_max_tx_changes_gets_must_refetch(
    issues: str, redis_url: str
) -> None:
    five = "INSERT INTO issues (id, team_id, title) SELECT i, 1, 't' FROM generate_series(1, 5) i"
    settings = gateway_settings(issues, redis_url, gateway_max_tx_changes=3)
    with capturing(issues, redis_url):
        async with serve(settings) as url, await SyncConnection.connect(
            url, authorization=TEAM_1
        ) as conn:
            live = conn.sync(QUERY)
            ready = await anext(live)
            assert ready["upToDate"]
            await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (100, 1, 'a')")
            assert [c["op"] for c in (await anext(live))["changes"]] == ["INSERT"]
            await execute(issues, five)
            assert (await anext(live))["mustRefetch"]
            # The catch-up from a cursor (before the big transaction) is capped too.
            resumed = conn.sync(QUERY, cursor=ready["cursor"])
            messages = [m async for m in resumed]
            assert messages[-1]["mustRefetch"]
            assert sum(len(m["changes"]) for m in messages) <= 1


# 5. Input limits.


async def test_query_size_and_params_count_are_limited(issues: str, redis_url: str) -> None:
    settings = gateway_settings(
        issues, redis_url, gateway_max_query_bytes=200, gateway_max_params=3
    )
    async with serve(settings) as url:
        padded = QUERY + " AND title <> '" + "x" * 200 + "'"
        errors = await errors_of(url, padded)
        assert "gateway_max_query_bytes" in errors[0]["message"]
        errors = await errors_of(url, "SELECT id FROM issues WHERE id IN ($1, $2, $3, $4)", [1] * 4)
        assert "gateway_max_params" in errors[0]["message"]
        async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
            fine = await anext(conn.sync("SELECT id FROM issues WHERE id IN ($1, $2)", [1, 2]))
            assert fine["upToDate"]


async def test_big_frames_and_documents_are_refused(
    issues: str, redis_url: str, transport: str
) -> None:
    settings = gateway_settings(
        issues, redis_url, gateway_max_frame_bytes=65_536, gateway_max_graphql_tokens=200
    )
    async with serve(settings, **app_options(transport)) as url:
        ws = await connect(url)
        await init(ws)
        await subscribe(ws, QUERY + " AND title <> '" + "x" * 70_000 + "'")
        assert await close_code(ws) == 1009  # message too big

        ws = await connect(url)
        await init(ws)
        document = "subscription { " + "sync " * 300 + "}"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": document}}))
        assert await close_code(ws) == 4400


# 6. Internal errors are masked; pgsift's own pass through.


async def test_internal_errors_are_masked(issues: str, redis_url: str, transport: str) -> None:
    async with serve(gateway_settings(issues, redis_url), **app_options(transport)) as url:
        # The gateway's catalog still has `points`: Postgres's error names it, with SQL.
        await execute(issues, "ALTER TABLE issues DROP COLUMN points")
        ws = await connect(url)
        await init(ws)
        await subscribe(ws, "SELECT id, points FROM issues WHERE team_id = 1")
        errors = await reply(ws, "1")
        assert [e["message"] for e in errors] == ["Unexpected error."]
        assert "points" not in json.dumps(errors) and "SELECT" not in json.dumps(errors)
        await subscribe(ws, "SELECT id, secret FROM issues", op_id="2")
        errors = await reply(ws, "2")
        assert "secret" in errors[0]["message"]  # a PolicyError is the client's to read
        await subscribe(ws, "SELECT id FROM issues WHERE nope = 1", op_id="3")
        errors = await reply(ws, "3")
        assert "nope" in errors[0]["message"] and errors[0]["extensions"]["position"] == 28
        await ws.close()


async def test_a_cursor_of_thousands_of_digits_is_the_clients_error(
    issues: str, redis_url: str
) -> None:
    async with serve(gateway_settings(issues, redis_url)) as url, await SyncConnection.connect(
        url, authorization=TEAM_1
    ) as conn:
        with pytest.raises(OperationError) as failed:
            _ = [m async for m in conn.sync(QUERY, cursor="9" * 5000 + "-0")]
    message = failed.value.errors[0]["message"]
    assert "is not a feed position" in message and len(message) < 200


# 7. No policies: a warning at start.


async def test_no_policies_logs_a_warning(
    issues: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pgsift.middleware.gateway.service")
    async with serve(gateway_settings(issues, redis_url, policies={})):
        pass
    warned = [r for r in caplog.records if "NO [policies] CONFIGURED" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "pgsift.toml" in warned[0].getMessage()
    caplog.clear()
    async with serve(gateway_settings(issues, redis_url)):
        pass
    assert not [r for r in caplog.records if "policies" in r.getMessage()]
