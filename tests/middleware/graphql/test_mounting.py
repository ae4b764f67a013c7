"""Mounting pgsift's fields into an app's schema, and what a document selects (no servers)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import graphene  # type: ignore[import-untyped]
import httpx
import pytest
import strawberry
from graphql import parse

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.rows import requested_keys
from pgsift.middleware.graphql.graphene_mount import mount_graphene
from pgsift.middleware.graphql.graphene_types import GrapheneTypes
from pgsift.middleware.graphql.selection import selected_fields
from pgsift.middleware.graphql.strawberry_mount import mount_strawberry
from pgsift.middleware.graphql.strawberry_types import StrawberryTypes
from pgsift.middleware.settings import Settings
from pgsift.subscriptions import Catalog
from pgsift.subscriptions.typed_schema import typed_schema
from pgsift.subscriptions.typemodel import Field

ISSUES = Catalog.from_dict(
    {"issues": {"columns": {"id": "int8", "team_id": "int8", "title": "text", "class": "text"},
                "primary_key": ["id"]}},
)  # fmt: skip
MODEL = typed_schema(ISSUES)
LIVE = """
subscription($skip: Boolean!) {
  issues {
    changes { op row { id ...Title ... on Issues { teamId @skip(if: $skip) } __typename } }
    again: changes { row { title class } }
    upToDate
  }
}
fragment Title on Issues { title renamed: title }
"""


@pytest.mark.parametrize("library", ["strawberry", "graphene"])
@pytest.mark.parametrize("skip", [True, False])
def test_the_selection_decides_the_columns(library: str, skip: bool) -> None:
    seen: list[list[str]] = []

    def resolvers(field: Field) -> Any:
        async def live(root: Any, info: Any, **kwargs: Any) -> Any:
            seen.append(selected_fields(info, ("changes", "row")))
            yield SimpleNamespace(changes=[], upToDate=True)

        return live

    types = StrawberryTypes(MODEL) if library == "strawberry" else GrapheneTypes(MODEL)
    schema = types.schema(resolvers=resolvers)

    async def first() -> Any:
        stream = await schema.subscribe(LIVE, variable_values={"skip": skip})
        async for result in stream:
            return result
        return None

    result = asyncio.run(first())
    assert result.errors is None, result.errors
    # Fragments, inline fragments, aliases and both `changes` selections; not __typename.
    expected = ["id", "title", "class"] if skip else ["id", "title", "teamId", "class"]
    assert seen == [expected]


@strawberry.type
class AppQuery:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class ClashingQuery:
    issues: str = "mine"


def test_strawberry_app_keeps_its_fields_and_clashes_are_refused() -> None:
    mounted = mount_strawberry(strawberry.Schema(query=AppQuery), MODEL, Settings())
    sdl = mounted.as_str()
    for field in ("hello: String!", "rows(", "sync(", "issuesByKey(", "mutate("):
        assert field in sdl, field
    assert "DIRECTIVE_DEFINITION" not in sdl  # graphql-js 16 cannot parse it
    with pytest.raises(ConfigError, match=r"Query\.issues is a field of both"):
        mount_strawberry(strawberry.Schema(query=ClashingQuery), MODEL, Settings())


class GrapheneQuery(graphene.ObjectType):  # type: ignore[misc]
    hello = graphene.String(default_value="world")


class GrapheneClash(graphene.ObjectType):  # type: ignore[misc]
    issues_by_key = graphene.String()


class OwnSubscription(graphene.ObjectType):  # type: ignore[misc]
    sync = graphene.String(description="the app's own")


def test_graphene_app_keeps_its_fields_and_clashes_are_refused() -> None:
    base = graphene.Schema(query=GrapheneQuery, subscription=OwnSubscription)
    schema = mount_graphene(base, MODEL, Settings()).graphql_schema
    assert schema.query_type is not None and schema.subscription_type is not None
    assert {"hello", "rows", "issues", "issuesByKey"} <= set(schema.query_type.fields)
    assert schema.subscription_type.fields["sync"].description == "the app's own"
    with pytest.raises(ConfigError, match=r"Query\.issuesByKey is a field of both"):
        mount_graphene(graphene.Schema(query=GrapheneClash), MODEL, Settings())


def test_keys_of_typed_reads_count_toward_the_documents_bound() -> None:
    document = parse(
        'query($k: [IssuesKeyInput!]!) { a: issuesByKey(keys: $k) { id } '
        'b: issuesByKey(keys: [{id: "1"}, {id: "2"}]) { id } rows(table: "t", keys: [1]) }'
    )
    assert requested_keys(document, None, {"k": [{"id": 1}] * 5}) == 8


@pytest.mark.parametrize("library", ["strawberry", "graphene"])
@pytest.mark.parametrize("graphiql", [True, False])
async def test_graphiql_on_get_unless_off_and_the_apps_query_over_post(
    library: str, graphiql: bool
) -> None:
    """Before its lifespan starts the app serves the app's fields and pgsift's generic
    ones (the typed ones come with the catalog); nothing here reaches a server."""
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0",
        auth_jwt_secret="x" * 32, gateway_graphiql=graphiql,
    )  # fmt: skip
    if library == "strawberry":
        app = create_app(settings, strawberry_schema=strawberry.Schema(query=AppQuery))
    else:
        app = create_app(settings, graphene_schema=graphene.Schema(query=GrapheneQuery))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert (page.status_code == 200 and "graphiql" in page.text.lower()) is graphiql
        answer = await http.post("/graphql", json={"query": "{ hello }"})
        assert answer.json() == {"data": {"hello": "world"}}
        document = 'subscription { sync(query: "x") { cursor } }'
        subscription = await http.post("/graphql", json={"query": document})
        assert subscription.status_code == 400 and "websockets only" in subscription.text
