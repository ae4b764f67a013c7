"""Loads by key are bounded (`loader_max_keys`) per request, on every path: GraphQL `rows`
(all its fields in one document together, over HTTP and the websocket), `POST /v1/rows`,
the loader itself. The count comes before any key is looked at, and a big request that is
allowed does not stall the gateway's other clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import websockets
from graphql import parse

from pgsift.middleware.errors import TooManyKeysError
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.rows import requested_keys
from pgsift.middleware.loader import BatchLoader
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    TRANSPORTS,
    WAIT_S,
    app_options,
    eventually,
    gateway_settings,
    serving,
    token,
)
from tests.middleware.gateway.pgrows import execute

TEAM_1 = token({"sub": "u1", "team_ids": [1]})
HEADERS = {"Authorization": TEAM_1}
ROWS = 'rows(table: "issues", keys: $%s, columns: ["id"])'


def aliased(count: int) -> str:
    """A query with `count` aliases of `rows`, keys in $k0, $k1, ..."""
    variables = ", ".join(f"$k{i}: [JSON!]!" for i in range(count))
    fields = " ".join(f"a{i}: " + ROWS % f"k{i}" for i in range(count))
    return f"query({variables}) {{ {fields} }}"


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title) SELECT i, 1, 't' FROM generate_series(1, 100) i",
    )
    return database_url


async def graphql(http: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> Any:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    return response.json()


def loader_of(app: Any) -> BatchLoader:
    loader: BatchLoader = app.state.loader
    return loader


async def test_one_alias_past_the_limit_says_too_many_keys(issues: str, redis_url: str) -> None:
    # Bodies big enough for a million keys: the key limit is the one that answers.
    settings = gateway_settings(issues, redis_url, gateway_max_body_bytes=16 * 2**20)
    app = create_app(settings)
    million = [0] * 1_000_000
    async with serving(app, settings) as url, httpx.AsyncClient(
        base_url=url.replace("ws://", "http://").removesuffix("/graphql"),
        headers=HEADERS, timeout=WAIT_S,
    ) as http:
        body = await graphql(http, aliased(1), {"k0": million})
        assert body["data"] is None
        [error] = body["errors"]
        assert error["message"] == "too many keys: 1000000 > 10000 (loader_max_keys)"
        assert error["extensions"] == {"code": "TooManyKeysError"}
        response = await http.post("/v1/rows", json={"table": "issues", "keys": million})
        assert response.status_code == 400
        assert response.json() == {"error": "too many keys: 1000000 > 10000 (loader_max_keys)"}
        assert loader_of(app).stats.keys_requested == 0  # refused before any key was looked at


async def test_the_limit_counts_every_rows_field_of_a_document(
    issues: str, redis_url: str
) -> None:
    settings = gateway_settings(issues, redis_url)
    app = create_app(settings)
    keys = list(range(1, 4001))
    four_thousand = {f"k{i}": keys for i in range(3)}
    fragment = 'fragment More on Query { more: rows(table: "issues", keys: [1, 2, 3]) }'
    document = aliased(3).removesuffix("}") + "...More } " + fragment
    expected = "too many keys: 12003 > 10000 (loader_max_keys)"
    async with serving(app, settings) as url, httpx.AsyncClient(
        base_url=url.replace("ws://", "http://").removesuffix("/graphql"),
        headers=HEADERS, timeout=WAIT_S,
    ) as http:
        body = await graphql(http, document, four_thousand)
        assert body["data"] is None and body["errors"][0]["message"] == expected
        # The same over the websocket.
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": HEADERS}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            payload = {"query": document, "variables": four_thousand}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            answer = json.loads(await ws.recv())
            errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
            assert errors[0]["message"] == expected
        assert loader_of(app).stats.keys_requested == 0
        # Two of them fit: 8,000 keys are answered, one row per key.
        body = await graphql(http, aliased(2), {"k0": keys, "k1": keys})
        assert "errors" not in body
        assert [len(body["data"][a]) for a in ("a0", "a1")] == [4000, 4000]
        assert body["data"]["a0"][:2] == [{"id": "1"}, {"id": "2"}]


def mixed(count: int) -> str:
    """`count` aliases, half of them `rows` ($r0, ...), half typed `issuesByKey` ($t0, ...)."""
    half = count // 2
    variables = [f"$r{i}: [JSON!]!" for i in range(half)]
    variables += [f"$t{i}: [IssuesKeyInput!]!" for i in range(count - half)]
    fields = [f"r{i}: " + ROWS % f"r{i}" for i in range(half)]
    fields += [f"t{i}: issuesByKey(keys: $t{i}) {{ id }}" for i in range(count - half)]
    return f"query({', '.join(variables)}) {{ {' '.join(fields)} }}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_fifty_aliases_of_many_keys_are_refused_on_every_transport(
    issues: str, redis_url: str, transport: str
) -> None:
    """`rows` and typed `issuesByKey` aliases count together, for strawberry and graphene,
    over HTTP and the websocket: a clear error, and no key reaches the loader."""
    settings = gateway_settings(issues, redis_url)
    app = create_app(settings, **app_options(transport))
    keys = list(range(1, 251))
    variables = {**{f"r{i}": keys for i in range(25)},
                 **{f"t{i}": [{"id": k} for k in keys] for i in range(25)}}  # fmt: skip
    expected = "too many keys: 12500 > 10000 (loader_max_keys)"
    async with serving(app, settings) as url, httpx.AsyncClient(
        base_url=url.replace("ws://", "http://").removesuffix("/graphql"),
        headers=HEADERS, timeout=WAIT_S,
    ) as http:
        response = await http.post("/graphql", json={"query": mixed(50), "variables": variables})
        body = response.json()
        assert body["data"] is None, body
        [error] = body["errors"]
        assert error["message"] == expected
        assert error["extensions"] == {"code": "TooManyKeysError"}
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": HEADERS}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            payload = {"query": mixed(50), "variables": variables}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "next", answer
            assert answer["payload"]["data"] is None
            assert [e["message"] for e in answer["payload"]["errors"]] == [expected]
            assert json.loads(await ws.recv()) == {"id": "1", "type": "complete"}
        assert loader_of(app).stats.keys_requested == 0  # nothing ran
        # Within the limit, the same document runs on both transports.
        response = await http.post("/graphql", json={"query": mixed(2), "variables": {
            "r0": [1, 2], "t0": [{"id": 3}]}})  # fmt: skip
        assert response.json()["data"] == {"r0": [{"id": "1"}, {"id": "2"}], "t0": [{"id": "3"}]}


async def test_the_limit_is_a_setting_for_every_path(issues: str, redis_url: str) -> None:
    settings = gateway_settings(issues, redis_url, loader_max_keys=5)
    app = create_app(settings)
    async with serving(app, settings) as url, httpx.AsyncClient(
        base_url=url.replace("ws://", "http://").removesuffix("/graphql"), headers=HEADERS
    ) as http:
        body = await graphql(http, aliased(2), {"k0": [1, 2, 3], "k1": [4, 5, 6]})
        assert body["errors"][0]["message"] == "too many keys: 6 > 5 (loader_max_keys)"
        response = await http.post("/v1/rows", json={"table": "issues", "keys": [1] * 6})
        assert response.json() == {"error": "too many keys: 6 > 5 (loader_max_keys)"}
        response = await http.post("/v1/rows", json={"table": "issues", "keys": [1] * 5})
        assert response.status_code == 200 and len(response.json()["rows"]) == 5
        loader = loader_of(app)
        assert loader.max_keys == 5
        with pytest.raises(TooManyKeysError, match=r"too many keys: 6 > 5 \(loader_max_keys\)"):
            await loader.load_many("issues", [1] * 6, {"team_ids": [1]})


@pytest.mark.parametrize(
    ("document", "variables", "count"),
    [
        ('{ rows(table: "t", keys: [1, 2]) }', {}, 2),
        ('{ a: rows(table: "t", keys: [1, 2]) b: rows(table: "t", keys: 3) }', {}, 3),
        ('{ rows(table: "t", keys: null) __typename }', {}, 0),
        ("query($k: [JSON!]!) { rows(table: \"t\", keys: $k) }", {"k": [1, 2, 3]}, 3),
        ("query($k: [JSON!]!) { rows(table: \"t\", keys: $k) }", {"k": 7}, 1),
        ("query($k: [JSON!]) { rows(table: \"t\", keys: $k) }", {}, 0),
        # Fields of one response name are one field to GraphQL; a fragment spread twice too.
        ('{ rows(table: "t", keys: [1]) rows(table: "t", keys: [1]) }', {}, 1),
        ('{ ...F ...F ... on Query { b: rows(table: "t", keys: [1, 2]) } }'
         ' fragment F on Query { a: rows(table: "t", keys: [1, 2, 3]) }', {}, 5),
    ],
)
def test_requested_keys(document: str, variables: dict[str, Any], count: int) -> None:
    assert requested_keys(parse(document), None, variables) == count


async def test_health_answers_while_a_big_request_is_served(
    issues: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 50_000
    await execute(
        issues,
        f"INSERT INTO issues (id, team_id, title) SELECT i, 1, 't'"
        f" FROM generate_series(1000, {999 + size}) i",
    )
    # The loader serves from its cache only while capture's heartbeat says the feed is
    # current (and /healthz is 200 only then): capture runs, and a slow heartbeat or
    # tailer on a busy machine does not count as a stale feed.
    settings = gateway_settings(
        issues, redis_url, loader_max_keys=size, loader_max_pending=size,
        loader_cache_rows=size, loader_timeout_s=WAIT_S, gateway_max_body_bytes=4 * 2**20,
        feed_stale_after_s=3600.0, gateway_max_feed_lag_s=3600.0,
    )
    app = create_app(settings)
    keys = list(range(1000, 1000 + size))
    with capturing(issues, redis_url):
        async with serving(app, settings) as url, httpx.AsyncClient(
            base_url=url.replace("ws://", "http://").removesuffix("/graphql"),
            headers=HEADERS, timeout=WAIT_S,
        ) as http:
            await big_load_beside_health(http, loader_of(app), keys, monkeypatch)


async def big_load_beside_health(
    http: httpx.AsyncClient, loader: BatchLoader, keys: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All `keys` through GraphQL `rows`, twice (the second time from the cache), with
    /healthz asked as the second load starts."""

    async def healthy() -> bool:
        return (await http.get("/healthz")).status_code == 200

    await eventually(healthy, "healthy (capture's heartbeat seen)")
    warm = await graphql(http, aliased(1), {"k0": keys})  # every row now in the cache
    assert warm["data"]["a0"][-1] == {"id": str(keys[-1])}
    load_many = loader.load_many
    health_during_load: list[bool] = []

    async def watched(table: str, keys: Sequence[Any], *args: Any) -> Any:
        # /healthz asked the moment the big load starts must be answered before it ends:
        # an ordering, with the whole load (50,000 keys) as the margin.
        health = asyncio.create_task(http.get("/healthz"))
        rows = await load_many(table, keys, *args)
        health_during_load.append(health.done())
        assert (await health).status_code == 200
        return rows

    monkeypatch.setattr(loader, "load_many", watched)
    again = await graphql(http, aliased(1), {"k0": keys})
    assert again == warm
    assert loader.stats.cache_hits >= len(keys)
    assert health_during_load == [True]
