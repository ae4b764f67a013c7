"""`POST /v1/rows` in a small Starlette app with the gateway's Authenticator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.loader import rows_endpoint, rows_route
from tests.middleware.loader.conftest import ORG, POLICIES, LoaderFactory

SECRET = "loader-test-secret-of-at-least-32-bytes"


def bearer(claims: dict[str, Any]) -> dict[str, str]:
    claims = {"exp": int(time.time()) + 3600, **claims}
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


@pytest.fixture
async def client(make_loader: LoaderFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[rows_route()])
    app.state.loader = await make_loader(policies=POLICIES)
    app.state.authenticator = Authenticator(secret=SECRET)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def test_rows_in_order_filtered_by_the_callers_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/rows",
        json={"table": "items", "keys": [3, "four", 6, 999], "columns": ["id", "title"]},
        headers=bearer({"team_ids": [0]}),
    )
    assert response.status_code == 400  # "four" is not an int8
    assert "key #1 of public.items" in response.json()["error"]

    response = await client.post(
        "/v1/rows",
        json={"table": "items", "keys": [3, 4, 6, 999], "columns": ["id", "title"]},
        headers=bearer({"team_ids": [0]}),
    )
    assert response.status_code == 200
    assert response.json() == {
        "rows": [{"id": "3", "title": "item 3"}, None, {"id": "6", "title": "item 6"}, None],
        "types": {"id": "int8", "title": "text"},  # of the columns returned only
    }


async def test_rows_are_in_json_form(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/rows",
        json={"table": "memberships", "keys": [{"org_id": str(ORG), "user_id": 1}]},
        headers=bearer({}),
    )
    assert response.status_code == 200
    assert response.json() == {
        "rows": [{"org_id": str(ORG), "user_id": 1, "role": "owner"}],
        "types": {"org_id": "uuid", "user_id": "int4", "role": "text"},
    }


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"table": "items", "keys": [1]}, {}, 401, "missing token"),
        ({"table": "items", "keys": [1]}, {"Authorization": "Bearer x"}, 401, "invalid token"),
        ([1, 2], None, 400, "must be a JSON object"),
        ({"table": "items"}, None, 400, '"keys" must be a list'),
        ({"table": "items", "keys": [], "limit": 3}, None, 400, "unknown field(s): limit"),
        ({"table": "items", "keys": [1], "columns": "id"}, None, 400, "list of strings"),
        ({"table": "items", "keys": [1], "columns": ["secret"]}, None, 403, "not readable"),
        ({"table": "items_text", "keys": ["a"]}, None, 403,
         "no policy allows reading public.items_text"),
        ({"table": "nope", "keys": [1]}, None, 400, "unknown table"),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient,
    body: Any,
    headers: dict[str, str] | None,
    status: int,
    message: str,
) -> None:
    sent = bearer({"team_ids": [0]}) if headers is None else headers
    response = await client.post("/v1/rows", json=body, headers=sent)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_database_down_is_503(make_loader: LoaderFactory) -> None:
    app = Starlette(routes=[Route("/v1/rows", rows_endpoint, methods=["POST"])])
    app.state.loader = await make_loader(url="postgresql://postgres@127.0.0.1:1/x", timeout_s=0.3)
    app.state.authenticator = Authenticator(secret=SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        response = await client.post(
            "/v1/rows", json={"table": "items", "keys": [1]}, headers=bearer({})
        )
    assert response.status_code == 503
    assert "0.3 s" in response.json()["error"]
