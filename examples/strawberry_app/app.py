"""An existing strawberry app with pgsift mounted into it.

The app has its own types, query and mutation (`Todo`, `openTodos`, `addTodo`);
one call, `create_app(settings, strawberry_schema=schema)`, gives the ASGI app
that serves the app's schema together with pgsift's fields: the typed live
field `Subscription.todos(where, cursor)`, the reads `Query.todos(where, limit)`
and `Query.todosByKey(keys)`, and the generic `sync`, `rows` and `mutate`, over
HTTP (`POST /graphql`, GraphiQL on `GET /graphql`) and graphql-transport-ws.
"""

from __future__ import annotations

import strawberry
from starlette.applications import Starlette

from examples.todos import store
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.settings import Settings


@strawberry.type
class Todo:
    """The app's own todo type (pgsift's typed one is `Todos`)."""

    id: strawberry.ID
    list_id: int
    title: str
    done: bool


def _database_url(info: strawberry.Info) -> str:
    settings: Settings = info.context["request"].app.state.settings
    assert settings.database_url is not None  # create_app's gateway cannot start without it
    return settings.database_url


@strawberry.type
class Query:
    @strawberry.field(description="How many todos of a list are not done.")  # type: ignore[untyped-decorator]
    async def open_todos(self, info: strawberry.Info, list_id: int) -> int:
        return await store.count_open(_database_url(info), list_id)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Add a todo to a list.")  # type: ignore[untyped-decorator]
    async def add_todo(self, info: strawberry.Info, list_id: int, title: str) -> Todo:
        row = await store.add(_database_url(info), list_id, title)
        return Todo(id=strawberry.ID(str(row["id"])), list_id=row["list_id"], title=row["title"],
                    done=row["done"])  # fmt: skip


schema = strawberry.Schema(query=Query, mutation=Mutation)


def app(settings: Settings) -> Starlette:
    """The app's schema and pgsift's, one ASGI app."""
    return create_app(settings, strawberry_schema=schema)
