"""The strawberry schema of the gateway: `Subscription.sync` (see issue 4's contract).

The websocket context carries the connection's verified claims and send budget
(set by `GraphQLView.on_ws_connect`); errors a client can cause (a bad query, a
forbidden column, a bad cursor) become GraphQL errors of that one operation,
with `extensions.position/line/column` for query errors.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from typing import Any, cast

import strawberry
from graphql import GraphQLError
from pgsift.middleware.gateway.messages import SyncMessage as Message
from pgsift.middleware.gateway.messages import WireChange
from pgsift.middleware.gateway.service import SyncService
from pgsift.subscriptions.errors import PgsiftError, QueryError
from strawberry.scalars import JSON
from strawberry.types import Info


@strawberry.enum
class Op(enum.Enum):
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@strawberry.type
class Change:
    op: Op
    key: JSON
    row: JSON | None


@strawberry.type
class SyncMessage:
    changes: list[Change]
    cursor: str | None
    up_to_date: bool
    must_refetch: bool


@strawberry.type
class Query:
    @strawberry.field(description="Always true; GraphQL needs a query type.")  # type: ignore[untyped-decorator]
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="The rows of `query` (SQL, $n = params), then every change to them."
    )
    async def sync(
        self,
        info: Info[dict[str, Any], None],
        query: str,
        params: JSON | None = None,
        cursor: str | None = None,
    ) -> AsyncGenerator[SyncMessage, None]:
        context = info.context
        service: SyncService = context["service"]
        if context["claims"] is None:
            raise GraphQLError("not authenticated", extensions={"code": "AuthError"})
        messages = await open_sync(
            service, query, params, cursor, context["claims"], context["budget"]
        )
        async for message in messages:
            yield to_graphql(message)


async def open_sync(
    service: SyncService,
    query: str,
    params: Any,
    cursor: str | None,
    claims: dict[str, Any],
    budget: Any,
) -> Any:
    """`service.sync(...)` with client-caused errors turned into GraphQL errors."""
    try:
        return await service.sync(query, params, cursor, claims, budget)
    except PgsiftError as exc:
        raise graphql_error(exc) from exc


def graphql_error(exc: PgsiftError) -> GraphQLError:
    extensions: dict[str, Any] = {"code": type(exc).__name__}
    if isinstance(exc, QueryError) and exc.position is not None:
        extensions.update(position=exc.position, line=exc.line, column=exc.column)
    return GraphQLError(str(exc), extensions=extensions)


def to_graphql(message: Message) -> SyncMessage:
    return SyncMessage(
        changes=[_change(c) for c in message.changes],
        cursor=message.cursor,
        up_to_date=message.up_to_date,
        must_refetch=message.must_refetch,
    )


def _change(change: WireChange) -> Change:
    return Change(op=Op(change.op), key=cast(JSON, change.key), row=cast("JSON | None", change.row))


schema = strawberry.Schema(query=Query, subscription=Subscription)
