"""`query { rows(...) }`: the batch loader over GraphQL, same answers as POST /v1/rows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pgsift.middleware.gateway.http_subscriptions import SUBSCRIPTION_OVER_HTTP
from tests.middleware.gateway.harness import ISSUES_SCHEMA, gateway_settings, serve, token
from tests.middleware.gateway.pgrows import execute

TEAM_1 = token({"sub": "u1", "team_ids": [1]})
ROWS = (
    "query($keys: [JSON!]!, $columns: [String!]) "
    '{ rows(table: "issues", keys: $keys, columns: $columns) }'
)


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title, points, secret)"
        " VALUES (1, 1, 'one', 1.50, 's1'), (2, 2, 'two', NULL, 's2'), (3, 1, 'three', 3, 's3')",
    )
    return database_url


async def graphql(
    http: httpx.AsyncClient, url: str, variables: dict[str, Any], authorization: str | None
) -> dict[str, Any]:
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.post(url, json={"query": ROWS, "variables": variables}, headers=headers)
    body: dict[str, Any] = response.json()
    return body


async def test_rows_in_key_order_with_null_for_missing_and_forbidden(
    issues: str, redis_url: str
) -> None:
    async with serve(gateway_settings(issues, redis_url)) as url, httpx.AsyncClient() as http:
        http_url = url.replace("ws://", "http://")
        keys = [3, 2, 99, 1]
        body = await graphql(http, http_url, {"keys": keys, "columns": ["id", "title", "points"]},
                             TEAM_1)
        assert "errors" not in body, body
        assert body["data"]["rows"] == [
            {"id": "3", "title": "three", "points": "3"},  # int8: a string on the wire
            None,  # team 2: not allowed, indistinguishable from missing
            None,
            {"id": "1", "title": "one", "points": "1.50"},
        ]
        rest = await http.post(
            http_url.replace("/graphql", "/v1/rows"),
            json={"table": "issues", "keys": keys, "columns": ["id", "title", "points"]},
            headers={"Authorization": TEAM_1},
        )
        assert rest.json()["rows"] == body["data"]["rows"]


async def test_forbidden_column_and_missing_token_are_errors(issues: str, redis_url: str) -> None:
    async with serve(gateway_settings(issues, redis_url)) as url, httpx.AsyncClient() as http:
        http_url = url.replace("ws://", "http://")
        forbidden = await graphql(http, http_url, {"keys": [1], "columns": ["id", "secret"]},
                                  TEAM_1)
        assert forbidden.get("data") is None
        assert "secret" in forbidden["errors"][0]["message"]
        anonymous = await graphql(http, http_url, {"keys": [1]}, None)
        assert anonymous["errors"][0]["message"] == "not authenticated"
        assert "s1" not in str(forbidden) + str(anonymous)


async def test_a_subscription_over_http_says_to_use_a_websocket(
    issues: str, redis_url: str
) -> None:
    sync = 'subscription Live { sync(query: "SELECT id FROM issues") { cursor } }'
    async with serve(gateway_settings(issues, redis_url)) as url, httpx.AsyncClient() as http:
        http_url = url.replace("ws://", "http://")
        headers = {"Authorization": TEAM_1}
        posted = await http.post(http_url, json={"query": sync}, headers=headers)
        got = await http.get(http_url, params={"query": sync}, headers=headers)
        for response in (posted, got):
            assert response.status_code == 400
            assert response.json() == {"data": None, "errors": [{
                "message": SUBSCRIPTION_OVER_HTTP, "extensions": {"code": "SubscriptionOverHTTP"},
            }]}
        # In a document with a query too, the operation named is the one that counts.
        both = f"{sync} query Rows {{ rows(table: \"issues\", keys: [1], columns: [\"id\"]) }}"
        rows = await http.post(http_url, json={"query": both, "operationName": "Rows"},
                               headers=headers)
        assert rows.status_code == 200 and rows.json() == {"data": {"rows": [{"id": "1"}]}}
