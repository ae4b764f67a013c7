"""An existing graphene 3 app with pgsift mounted into it.

The app has its own types, query and mutation (`Todo`, `openTodos`, `addTodo`);
one call, `create_app(settings, graphene_schema=schema)`, gives the ASGI app
that serves the app's schema together with pgsift's fields: the typed live
field `Subscription.todos(where, cursor)`, the reads `Query.todos(where, limit)`
and `Query.todosByKey(keys)`, and the generic `sync`, `rows` and `mutate`. The
app's queries and mutations keep working over `POST /graphql` (GraphiQL on
`GET /graphql`); subscriptions go over graphql-transport-ws.
"""

from __future__ import annotations

from typing import Any

import graphene  # type: ignore[import-untyped]
from graphql import GraphQLResolveInfo
from starlette.applications import Starlette

from examples.todos import store
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.settings import Settings


class Todo(graphene.ObjectType):  # type: ignore[misc]
    """The app's own todo type (pgsift's typed one is `Todos`)."""

    id = graphene.ID(required=True)
    list_id = graphene.Int(required=True)
    title = graphene.String(required=True)
    done = graphene.Boolean(required=True)


def _database_url(info: GraphQLResolveInfo) -> str:
    settings: Settings = info.context["request"].app.state.settings
    assert settings.database_url is not None  # create_app's gateway cannot start without it
    return settings.database_url


class Query(graphene.ObjectType):  # type: ignore[misc]
    open_todos = graphene.Int(
        required=True, list_id=graphene.Int(required=True),
        description="How many todos of a list are not done.",
    )  # fmt: skip

    @staticmethod
    async def resolve_open_todos(root: Any, info: GraphQLResolveInfo, list_id: int) -> int:
        return await store.count_open(_database_url(info), list_id)


class AddTodo(graphene.Mutation):  # type: ignore[misc]
    """Add a todo to a list."""

    class Arguments:
        list_id = graphene.Int(required=True)
        title = graphene.String(required=True)

    Output = Todo

    @staticmethod
    async def mutate(root: Any, info: GraphQLResolveInfo, list_id: int, title: str) -> Todo:
        row = await store.add(_database_url(info), list_id, title)
        return Todo(id=row["id"], list_id=row["list_id"], title=row["title"], done=row["done"])


class Mutation(graphene.ObjectType):  # type: ignore[misc]
    add_todo = AddTodo.Field()


schema = graphene.Schema(query=Query, mutation=Mutation)


def app(settings: Settings) -> Starlette:
    """The app's schema and pgsift's, one ASGI app."""
    return create_app(settings, graphene_schema=schema)
