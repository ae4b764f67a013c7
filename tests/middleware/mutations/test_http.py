"""`POST /v1/mutate` and the GraphQL `mutate` field of a running gateway: answers, hostile
input (which changes nothing), and one client's mutations at two gateways at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import graphene  # type: ignore[import-untyped]
import httpx
import psycopg
import pytest

from examples.python_client.protocol import GraphQLWebSocket, OperationError
from pgsift.middleware.gateway.graphene_adapter import sync_field
from pgsift.middleware.gateway.mutate_graphene import mutate_field
from pgsift.middleware.settings import Settings
from tests.middleware.gateway.harness import Query, gateway_settings, serve, token
from tests.middleware.mutations import app

ALICE = token({"sub": "alice"})
BOB = token({"sub": "bob"})
MUTATE = """
mutation Mutate($clientId: String!, $mutations: [MutationInput!]!) {
  mutate(clientId: $clientId, mutations: $mutations) {
    clientId lastMutationId results { id status message }
  }
}
"""


class Subscription(graphene.ObjectType):  # type: ignore[misc]
    sync = sync_field()


class Mutation(graphene.ObjectType):  # type: ignore[misc]
    """An app's own graphene Mutation type with pgsift's `mutate` mounted into it."""

    mutate = mutate_field()


GRAPHENE_SCHEMA = graphene.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def settings_for(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    return gateway_settings(
        database_url, redis_url, mutators=app.MUTATORS, mutations_max_batch=5,
        mutations_max_args_bytes=1000, gateway_max_body_bytes=20_000, **overrides
    )


@asynccontextmanager
async def gateway(settings: Settings, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway; an HTTP client on its base URL (`.ws` is its websocket URL)."""
    async with serve(settings, **options) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            http.ws = url  # type: ignore[attr-defined]
            yield http


async def mutate(
    http: httpx.AsyncClient, body: Any, authorization: str | None = ALICE
) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    if isinstance(body, (bytes, str)):
        return await http.post("/v1/mutate", content=body, headers=headers)
    return await http.post("/v1/mutate", json=body, headers=headers)


def notes(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [str(b) for (b,) in conn.execute("SELECT body FROM notes ORDER BY id")]


def ledger_rows(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT client_id, owner, last_mutation_id FROM pgsift.clients ORDER BY 1"
        ).fetchall()


def note(id: int, body: str = "x", name: str = "add_note") -> dict[str, Any]:
    return {"id": id, "name": name, "args": {"body": body}}


async def test_mutate_over_http(app_database: str, redis_url: str) -> None:
    async with gateway(settings_for(app_database, redis_url)) as http:
        body = {"clientId": "c1", "mutations": [note(1, "a"), note(2, "b", "refuse")]}
        response = await mutate(http, body)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "clientId": "c1",
            "lastMutationId": 2,
            "results": [{"id": 1, "status": "ok"},
                        {"id": 2, "status": "refused", "message": "no"}],
        }
        again = await mutate(http, {"clientId": "c1", "mutations": [note(2), note(3, "c")]})
        assert [r["status"] for r in again.json()["results"]] == ["duplicate", "ok"]
        ledger_only = await mutate(http, {"clientId": "c1", "mutations": []})
        assert ledger_only.json() == {"clientId": "c1", "lastMutationId": 3, "results": []}
    assert notes(app_database) == ["a", "c"]


HOSTILE: list[tuple[str, Any, int, str]] = [
    ("bad JSON", b"{nope", 400, "the body is not valid JSON"),
    ("a JSON array", [note(1)], 400, "JSON object"),
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, 413, "larger than"),
    ("nested past the recursion limit", b"[" * 5000 + b"]" * 5000, 400,
     "the body nests deeper than 64 levels (gateway_max_json_depth)"),
    ("nested past the JSON depth limit", b'{"a":' * 65 + b"1" + b"}" * 65, 400,
     "the body nests deeper than 64 levels (gateway_max_json_depth)"),
    ("a body over the limit", {"clientId": "c1", "mutations": [note(1, "x" * 30_000)]},
     413, "larger than 20000 bytes (gateway_max_body_bytes)"),
    ("args over the limit", {"clientId": "c1", "mutations": [note(1, "x" * 2000)]},
     400, "mutations_max_args_bytes"),
    ("args nested too deep",
     {"clientId": "c1", "mutations": [{"id": 1, "name": "add_note",
                                       "args": json.loads('{"a":' * 40 + "1" + "}" * 40)}]},
     400, "deeper than 32"),
    ("args not an object", {"clientId": "c1", "mutations": [{"id": 1, "name": "add_note",
                                                              "args": [1]}]},
     400, "args must be a JSON object"),
    ("a numeric client id", {"clientId": 7, "mutations": []}, 400, "clientId"),
    ("an empty client id", {"clientId": "", "mutations": []}, 400, "clientId"),
    ("a client id with a quote", {"clientId": "c'1", "mutations": []}, 400, "clientId"),
    ("mutations not a list", {"clientId": "c1", "mutations": {"id": 1}}, 400, "must be a list"),
    ("a string id", {"clientId": "c1", "mutations": [{**note(1), "id": "1"}]}, 400, ".id"),
    ("a boolean id", {"clientId": "c1", "mutations": [{**note(1), "id": True}]}, 400, ".id"),
    ("id zero", {"clientId": "c1", "mutations": [note(0)]}, 400, ".id"),
    ("an id past bigint", {"clientId": "c1", "mutations": [note(2**63)]}, 400, ".id"),
    ("a float id", {"clientId": "c1", "mutations": [{**note(1), "id": 1.0}]}, 400, ".id"),
    ("a numeric name", {"clientId": "c1", "mutations": [{**note(1), "name": 5}]}, 400, ".name"),
    ("an unknown mutator", {"clientId": "c1", "mutations": [note(1, name="drop_tables")]},
     400, "no mutator named 'drop_tables'"),
    ("ids out of order", {"clientId": "c1", "mutations": [note(2), note(1)]},
     400, "consecutive"),
    ("a repeated id", {"clientId": "c1", "mutations": [note(1), note(1)]}, 400, "consecutive"),
    ("too many mutations", {"clientId": "c1", "mutations": [note(i) for i in range(1, 7)]},
     400, "mutations_max_batch"),
    ("an unknown field", {"clientId": "c1", "mutations": [], "sql": "DROP TABLE notes"},
     400, "unknown field"),
    ("an unknown mutation field", {"clientId": "c1", "mutations": [{**note(1), "sql": "x"}]},
     400, "unknown field"),
    ("a gap", {"clientId": "c1", "mutations": [note(3)]}, 409, "leaves a gap"),
]


async def test_hostile_input_is_a_clear_error_and_changes_nothing(
    app_database: str, redis_url: str
) -> None:
    async with gateway(settings_for(app_database, redis_url)) as http:
        for what, body, status, message in HOSTILE:
            response = await mutate(http, body)
            assert (response.status_code, what) == (status, what), response.text
            assert message in response.json()["error"], (what, response.text)
        gap = await mutate(http, {"clientId": "c1", "mutations": [note(3)]})
        assert gap.json()["lastMutationId"] == 0
        assert (await mutate(http, {"clientId": "c1", "mutations": []}, None)).status_code == 401
        assert (await mutate(http, {"clientId": "c1", "mutations": []}, "Bearer x")
                ).status_code == 401
        assert notes(app_database) == []
        assert ledger_rows(app_database) == []
        # Another user's client id: refused, whatever the ids.
        assert (await mutate(http, {"clientId": "c1", "mutations": [note(1, "mine")]})
                ).status_code == 200
        for body in ({"clientId": "c1", "mutations": [note(2, "theirs")]},
                     {"clientId": "c1", "mutations": [note(1, "theirs")]},
                     {"clientId": "c1", "mutations": []}):
            stolen = await mutate(http, body, BOB)
            assert stolen.status_code == 403
            assert "another user" in stolen.json()["error"]
        # The gateway is still fine.
        assert (await http.get("/healthz")).status_code in (200, 503)
    assert notes(app_database) == ["mine"]
    assert ledger_rows(app_database) == [("c1", "alice", 1)]


async def test_mutate_over_graphql_http(app_database: str, redis_url: str) -> None:
    async with gateway(settings_for(app_database, redis_url)) as http:
        async def graphql(variables: dict[str, Any], authorization: str | None = ALICE) -> Any:
            headers = {"Authorization": authorization} if authorization else {}
            response = await http.post("/graphql", json={"query": MUTATE, "variables": variables},
                                       headers=headers)
            return response.json()

        body = await graphql({"clientId": "g1", "mutations": [
            {"id": 1, "name": "add_note", "args": {"body": "a"}},
            {"id": 2, "name": "explode"},
        ]})
        assert body == {"data": {"mutate": {
            "clientId": "g1", "lastMutationId": 2,
            "results": [
                {"id": 1, "status": "OK", "message": None},
                {"id": 2, "status": "ERROR",
                 "message": "the mutator failed; the gateway's log has the details"},
            ],
        }}}
        gap = await graphql({"clientId": "g1", "mutations": [{"id": 9, "name": "add_note"}]})
        assert gap["errors"][0]["extensions"] == {"code": "MutationGapError", "lastMutationId": 2}
        unknown = await graphql({"clientId": "g1", "mutations": [{"id": 3, "name": "nope"}]})
        assert unknown["errors"][0]["extensions"]["code"] == "MutationError"
        stolen = await graphql({"clientId": "g1", "mutations": []}, BOB)
        assert stolen["errors"][0]["extensions"]["code"] == "MutationForbiddenError"
        anonymous = await graphql({"clientId": "g1", "mutations": []}, None)
        assert anonymous["errors"][0]["message"] == "not authenticated"
        big = await graphql({"clientId": "g1", "mutations": [
            {"id": 3, "name": "add_note", "args": {"body": "x" * 2000}}]})
        assert "mutations_max_args_bytes" in big["errors"][0]["message"]
    assert notes(app_database) == ["a"]


@pytest.mark.parametrize("transport", ["strawberry", "graphene"])
async def test_mutate_over_websockets(app_database: str, redis_url: str, transport: str) -> None:
    options = {"graphene_schema": GRAPHENE_SCHEMA} if transport == "graphene" else {}
    async with gateway(settings_for(app_database, redis_url), **options) as http:
        url = http.ws  # type: ignore[attr-defined]
        async with GraphQLWebSocket(url, {"authorization": ALICE}) as ws:
            variables = {"clientId": "w1", "mutations": [
                {"id": 1, "name": "add_note", "args": {"body": "a"}},
                {"id": 2, "name": "refuse", "args": {"why": "nope"}},
            ]}
            [answer] = [data async for data in ws.subscribe(MUTATE, variables)]
            assert answer["mutate"]["results"] == [
                {"id": 1, "status": "OK", "message": None},
                {"id": 2, "status": "REFUSED", "message": "nope"},
            ]
            [again] = [data async for data in ws.subscribe(MUTATE, variables)]
            assert [r["status"] for r in again["mutate"]["results"]] == ["DUPLICATE"] * 2
            with pytest.raises(OperationError, match="leaves a gap"):
                async for _ in ws.subscribe(MUTATE, {"clientId": "w1", "mutations": [
                    {"id": 5, "name": "add_note", "args": {"body": "b"}}]}):
                    pass
    assert notes(app_database) == ["a"]


async def test_one_client_at_two_gateways_at_once(app_database: str, redis_url: str) -> None:
    """Two app instances get the same batches of one client at the same time (a client
    that resent to another gateway behind a load balancer): each mutation runs once."""
    settings = settings_for(app_database, redis_url)
    async with gateway(settings) as first, gateway(settings) as second:
        for round_ in range(10):
            ids = range(3 * round_ + 1, 3 * round_ + 4)
            body = {"clientId": "c1",
                    "mutations": [{"id": i, "name": "bump", "args": {}} for i in ids]}
            answers = await asyncio.gather(*(mutate(http, body) for http in (first, second) * 2))
            assert all(answer.status_code == 200 for answer in answers)
            for position in range(3):
                statuses = sorted(a.json()["results"][position]["status"] for a in answers)
                assert statuses == ["duplicate"] * 3 + ["ok"]
    with psycopg.connect(app_database) as conn:
        assert conn.execute("SELECT value FROM counters").fetchone() == (30,)
    assert ledger_rows(app_database) == [("c1", "alice", 30)]
