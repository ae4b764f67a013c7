"""Hostile client input against the running gateway: JSON nested too deeply wherever client
JSON is read, HTTP bodies past their size limit, websocket frames that are not usable
graphql-transport-ws messages. Each gets a clear 400 / 413 / close 4400, never a 500 or a
connection dropped without a close code, and the gateway serves the next client as before."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    TRANSPORTS,
    WAIT_S,
    app_options,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

TEAM_1 = token({"sub": "u1", "team_ids": [1]})
INIT = {"type": "connection_init", "payload": {"authorization": TEAM_1}}
DEEP = 100_000  # far past Python's recursion limit


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'one'), (2, 1, 'two')",
    )
    return database_url


# -- websocket frames: close 4400 with a reason, on every transport ------------------------

SUBSCRIBE = {"id": "1", "type": "subscribe"}
TYPENAME = {"query": "{ __typename }"}
BAD_FRAMES = {
    "array": "[1, 2]",
    "string": '"subscribe"',
    "null": "null",
    "deep array": nested(DEEP),
    "deep inside an object": '{"type": "ping", "payload": {"x": ' + nested(5000) + "}}",
    "deep variables": '{"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }", '
    '"variables": {"v": ' + nested(70) + "}}}",
    "payload an array": json.dumps({**SUBSCRIBE, "payload": [TYPENAME]}),
    "id a number": json.dumps({**SUBSCRIBE, "id": 1, "payload": TYPENAME}),
    "variables an array": json.dumps({**SUBSCRIBE, "payload": {**TYPENAME, "variables": [1]}}),
    "query a number": json.dumps({**SUBSCRIBE, "payload": {"query": 5}}),
    "complete without id": json.dumps({"type": "complete"}),
}


async def closed_with(url: str, frame: str) -> tuple[int | None, str]:
    """Send `frame` after the handshake; the close code and reason the server answers with."""
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], max_size=None  # type: ignore[list-item]
    ) as ws:
        await ws.send(json.dumps(INIT))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT_S):  # a hang guard: the server must close
                while True:
                    await ws.recv()
        return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unusable_frames_close_4400_with_a_reason(
    issues: str, redis_url: str, transport: str
) -> None:
    async with serve(gateway_settings(issues, redis_url), **app_options(transport)) as url:
        for name, frame in BAD_FRAMES.items():
            code, reason = await closed_with(url, frame)
            assert (code, bool(reason)) == (4400, True), f"{name}: {code} {reason!r}"
            if name.startswith("deep"):
                assert "gateway_max_json_depth" in reason, reason
        # The gateway is unharmed: a good frame on a new connection is answered.
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps(INIT))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"


# -- JSON depth over HTTP: a 400 naming the setting, wherever the JSON is ------------------


def http_base(url: str) -> str:
    return url.replace("ws://", "http://").removesuffix("/graphql")


async def deep_json_answers(
    base: str, depth: int, query_depth: int
) -> dict[str, httpx.Response]:
    """The answer of each HTTP entry point to client JSON `depth` levels deep (in a query
    string `query_depth`: URLs are shorter than bodies)."""
    headers = {"Authorization": TEAM_1}
    deep, in_query = nested(depth), nested(query_depth)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=WAIT_S) as http:
        return {
            "POST /v1/rows body": await http.post(
                "/v1/rows", content=f'{{"table": "issues", "keys": {deep}}}'
            ),
            "GET /v1/bootstrap params": await http.get(
                "/v1/bootstrap", params={"query": "SELECT id FROM issues", "params": in_query}
            ),
            "POST /graphql body": await http.post(
                "/graphql",
                content=f'{{"query": "{{ __typename }}", "variables": {{"v": {deep}}}}}',
                headers={"Content-Type": "application/json"},
            ),
            "GET /graphql variables": await http.get(
                "/graphql",
                params={"query": "{ __typename }", "variables": f'{{"v": {in_query}}}'},
            ),
        }


async def test_deep_json_is_a_400_everywhere(issues: str, redis_url: str) -> None:
    async with serve(gateway_settings(issues, redis_url)) as url:
        # Past the recursion limit, and just past the setting.
        for depth, query_depth in ((DEEP, 3000), (65, 65)):
            answers = await deep_json_answers(http_base(url), depth, query_depth)
            for where, response in answers.items():
                assert response.status_code == 400, f"{where}: {response.status_code}"
                assert "nests deeper than 64 levels (gateway_max_json_depth)" in response.text


async def test_json_depth_is_a_setting(issues: str, redis_url: str) -> None:
    settings = gateway_settings(issues, redis_url, gateway_max_json_depth=3)
    async with serve(settings) as url, httpx.AsyncClient(
        base_url=http_base(url), headers={"Authorization": TEAM_1}
    ) as http:
        fine = await http.post("/v1/rows", json={"table": "issues", "keys": [1]})
        assert fine.status_code == 200 and fine.json()["rows"][0]["title"] == "one"
        deep = await http.post("/v1/rows", json={"table": "issues", "keys": [[[1]]]})
        assert deep.status_code == 400
        assert deep.json() == {
            "error": "the body nests deeper than 3 levels (gateway_max_json_depth)"
        }


# -- body size: 413 without reading the body, or reading only up to the limit -------------

LIMIT = 65_536


def raw_head(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: {TEAM_1}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def raw_connection(url: str) -> Any:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("path", ["/v1/rows", "/graphql"])
async def test_a_declared_body_past_the_limit_is_413_before_it_is_sent(
    issues: str, redis_url: str, path: str
) -> None:
    settings = gateway_settings(issues, redis_url, gateway_max_body_bytes=LIMIT)
    async with serve(settings) as url, raw_connection(url) as (reader, writer):
        # 300 MB announced, none of it sent: the answer must not wait for it.
        writer.write(raw_head(path, "Content-Length: 300000000\r\n"))
        await writer.drain()
        async with asyncio.timeout(WAIT_S):  # a hang guard: it used to wait for the body
            status = await reader.readline()
            answer = await reader.read()  # the server closes the connection after it
        assert status.startswith(b"HTTP/1.1 413"), status
        assert b"larger than 65536 bytes (gateway_max_body_bytes)" in answer


@pytest.mark.parametrize("path", ["/v1/rows", "/graphql"])
async def test_a_chunked_body_is_read_only_up_to_the_limit(
    issues: str, redis_url: str, path: str
) -> None:
    total = 64 * 1024 * 1024
    chunk = b" " * 65_536  # JSON whitespace: the body is never complete JSON anyway
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    settings = gateway_settings(issues, redis_url, gateway_max_body_bytes=LIMIT)
    async with serve(settings) as url, raw_connection(url) as (reader, writer):
        writer.write(raw_head(path, "Transfer-Encoding: chunked\r\n"))
        answer = asyncio.create_task(reader.readline())
        sent = 0
        status: bytes | None = None
        async with asyncio.timeout(WAIT_S):  # a hang guard
            with contextlib.suppress(ConnectionError):
                while sent < total and not answer.done():
                    writer.write(framed)
                    await writer.drain()
                    sent += len(chunk)
                if sent == total:
                    writer.write(b"0\r\n\r\n")
            with contextlib.suppress(ConnectionError):  # the answer may be lost to the reset
                status = await answer
        # The server stopped reading near the limit; what was sent past it sat in socket
        # buffers (a few MB at most), never in the gateway.
        assert sent < total // 2, f"the gateway read {sent} bytes"
        assert not status or status.startswith(b"HTTP/1.1 413"), status


@pytest.mark.parametrize("path", ["/v1/rows", "/graphql"])
async def test_a_client_that_sends_its_whole_body_first_reads_the_413(
    issues: str, redis_url: str, path: str
) -> None:
    # httpx, like most clients, writes the whole body before it reads: closing the
    # connection on the unread rest would reset it, and the client would see no answer.
    settings = gateway_settings(issues, redis_url, gateway_max_body_bytes=LIMIT)
    async with serve(settings) as url, httpx.AsyncClient(
        base_url=http_base(url), headers={"Authorization": TEAM_1}, timeout=WAIT_S
    ) as http:
        for size in (4 * LIMIT, 3 * 2**20) * 3:
            # A request answered before, so the refused one comes on a kept-alive connection.
            assert (await http.post(path, content=b"[]")).status_code in (200, 400)
            response = await http.post(path, content=b" " * size)
            assert response.status_code == 413, (size, response.text)
            assert response.json() == {
                "error": f"the request body is larger than {LIMIT} bytes (gateway_max_body_bytes)"
            }


async def test_bodies_within_the_limit_are_served(issues: str, redis_url: str) -> None:
    settings = gateway_settings(issues, redis_url, gateway_max_body_bytes=LIMIT)
    async with serve(settings) as url, httpx.AsyncClient(
        base_url=http_base(url), headers={"Authorization": TEAM_1}
    ) as http:
        keys = [1] + [999] * 9000  # ~36 KB
        response = await http.post("/v1/rows", json={"table": "issues", "keys": keys})
        assert response.status_code == 200 and response.json()["rows"][0]["id"] == "1"
        query = {"query": "{ __typename }", "variables": {"pad": "x" * 60_000}}
        response = await http.post("/graphql", json=query)
        assert response.status_code == 200 and response.json()["data"] == {"__typename": "Query"}
