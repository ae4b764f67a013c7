"""The `sync` subscription for apps built on graphene 3.

`create_app(settings, graphene_schema=schema)` mounts it (with pgsift's other
fields, `pgsift.middleware.graphql.graphene_mount`) into an app's schema; an
app may also place it itself, where it wants it:

    class Subscription(graphene.ObjectType):
        sync = sync_field()
        ...                                          # the app's own subscriptions

The field's types (`SyncMessage`, `Change`, `Op`, `Confirmed`, `FailedMutation`,
`MutationStatus`, `JSON`) match the strawberry schema's, so the same clients work against either.
"""

from __future__ import annotations

from typing import Any

import graphene  # type: ignore[import-untyped]
from graphql import GraphQLResolveInfo, ValueNode, value_from_ast_untyped
from starlette.websockets import WebSocket

from pgsift.middleware.errors import AuthError, MutationError
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.gateway.client_json import JsonLimits
from pgsift.middleware.gateway.schema import open_sync
from pgsift.middleware.gateway.service import SyncService
from pgsift.middleware.gateway.transport_ws import GraphQLTransportWS
from pgsift.middleware.settings import Settings


class JSON(graphene.Scalar):  # type: ignore[misc]
    """Any JSON value, passed through as is."""

    @staticmethod
    def serialize(value: Any) -> Any:
        return value

    @staticmethod
    def parse_value(value: Any) -> Any:
        return value

    @staticmethod
    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        return value_from_ast_untyped(node, _variables)


class Op(graphene.Enum):  # type: ignore[misc]
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class Change(graphene.ObjectType):  # type: ignore[misc]
    op = graphene.Field(Op, required=True)
    key = graphene.Field(JSON, required=True)
    row = graphene.Field(JSON)


class MutationStatus(graphene.Enum):  # type: ignore[misc]
    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"
    DUPLICATE = "duplicate"


class MutationOutcome(graphene.ObjectType):  # type: ignore[misc]
    """The fields of one mutation's outcome, shared by the types that report one."""

    class Meta:
        abstract = True

    id = graphene.Int(required=True)
    status = graphene.Field(MutationStatus, required=True)
    message = graphene.String()


class FailedMutation(MutationOutcome):
    pass


class Confirmed(graphene.ObjectType):  # type: ignore[misc]
    last_mutation_id = graphene.Int(required=True)
    status = graphene.Field(MutationStatus, required=True)
    message = graphene.String()
    failed = graphene.List(graphene.NonNull(FailedMutation), required=True)


class SyncMessage(graphene.ObjectType):  # type: ignore[misc]
    changes = graphene.List(graphene.NonNull(Change), required=True)
    cursor = graphene.String()
    up_to_date = graphene.Boolean(required=True)
    must_refetch = graphene.Boolean(required=True)
    types = graphene.Field(JSON)
    confirmed = graphene.Field(Confirmed)


async def subscribe_sync(
    root: Any,
    info: GraphQLResolveInfo,
    query: str,
    params: Any = None,
    cursor: str | None = None,
) -> Any:
    """The source stream: messages of `SyncService.sync` (errors raised before it starts)."""
    return await open_sync(info.context, query, params, cursor)


class SyncField(graphene.Field):  # type: ignore[misc]
    """A graphene field whose subscribe function is pgsift's, whatever type it is mounted on."""

    def wrap_subscribe(self, parent_subscribe: Any) -> Any:
        return subscribe_sync


def sync_field() -> graphene.Field:
    """`sync(query: String!, params: JSON, cursor: String): SyncMessage!`"""
    return SyncField(
        SyncMessage,
        required=True,
        query=graphene.String(required=True),
        params=JSON(),
        cursor=graphene.String(),
        description="The rows of `query` (SQL, $n = params), then every change to them.",
    )


def graphene_websocket_app(
    schema: graphene.Schema,
    service: SyncService,
    authenticator: Authenticator,
    settings: Settings,
) -> GraphQLTransportWS:
    """An ASGI websocket app serving `schema` (with a `sync_field()`) over graphql-transport-ws."""

    def context(payload: dict[str, Any], websocket: WebSocket) -> dict[str, Any]:
        header = payload.get("authorization") or payload.get("Authorization")
        if not isinstance(header, str):
            header = websocket.headers.get("authorization")
        claims = authenticator.claims_from_authorization(header)
        try:
            client = service.bind_client(payload.get("clientId"), claims)
        except MutationError as exc:
            raise AuthError(str(exc)) from exc
        return {
            "request": websocket,
            "service": service,
            "claims": claims,
            "exp": authenticator.expires_at(claims),  # the connection closes (4403) then
            "budget": service.budget(),
            "client": client,
        }

    async def acknowledge(context: dict[str, Any]) -> dict[str, object] | None:
        return await service.acknowledge(context["client"])

    return GraphQLTransportWS(
        schema.graphql_schema,
        context=context,
        acknowledge=acknowledge,
        init_timeout_s=settings.gateway_connection_init_timeout_s,
        max_operations=settings.gateway_max_subscriptions_per_connection,
        max_tokens=settings.gateway_max_graphql_tokens,
        max_keys=settings.loader_max_keys,
        json_limits=JsonLimits.from_settings(settings),
    )
