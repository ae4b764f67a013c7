"""pgsift's fields in a graphene 3 schema, served over HTTP and websockets.

    schema = graphene.Schema(query=Query, mutation=Mutation)       # the app's
    app = create_app(settings, graphene_schema=schema)             # pgsift.middleware.gateway.app

`create_app` calls `mount_graphene` once the catalog is read (and again when it
changes): the app's root types gain pgsift's generic fields (`rows`, `mutate`,
`sync`; an app that mounted one itself, e.g. `sync = sync_field()`, keeps its
own) and the typed ones. `GrapheneGateway` serves the result on `/graphql`:
queries and mutations over `POST` (`graphene_http`), everything over
graphql-transport-ws (`transport_ws`), GraphiQL on a browser's `GET`. A typed
field whose name the app's root type already uses is refused (`ConfigError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import graphene  # type: ignore[import-untyped]
from graphene.utils.str_converters import to_camel_case  # type: ignore[import-untyped]
from graphql import GraphQLResolveInfo
from starlette.requests import Request

from pgsift.middleware.errors import AuthError, ConfigError
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.gateway.client_json import JsonLimits
from pgsift.middleware.gateway.graphene_adapter import JSON, Op, graphene_websocket_app, sync_field
from pgsift.middleware.gateway.mutate_graphene import mutate_field
from pgsift.middleware.gateway.rows import load_rows
from pgsift.middleware.gateway.service import SyncService
from pgsift.middleware.graphql.directives import for_graphql_js
from pgsift.middleware.graphql.graphene_http import GrapheneHTTP
from pgsift.middleware.graphql.graphene_types import GrapheneTypes, plain_input
from pgsift.middleware.graphql.resolvers import TypedResolvers
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.typemodel import TypeModel


async def _resolve_rows(
    root: Any, info: GraphQLResolveInfo, table: str, keys: list[Any], columns: Any = None
) -> list[Any]:
    return await load_rows(info.context, table, keys, columns)


def rows_field() -> graphene.Field:
    """`rows(table: String!, keys: [JSON!]!, columns: [String!]): [JSON]!` (as strawberry's)."""
    return graphene.Field(
        graphene.NonNull(graphene.List(JSON)),
        table=graphene.String(required=True),
        keys=graphene.NonNull(graphene.List(graphene.NonNull(JSON))),
        columns=graphene.List(graphene.NonNull(graphene.String)),
        resolver=_resolve_rows,
        description="Rows of `table` by primary key (an object for composite keys), through "
        "the batch loader: one entry per key, in order; null for a key that does not exist "
        "or that the caller's policy does not allow.",
    )


def _meta(name: str) -> type:
    return type("Meta", (), {"name": name})


def _graphql_names(root: Any) -> set[str]:
    if root is None:
        return set()
    return {field.name or to_camel_case(attr) for attr, field in root._meta.fields.items()}


def _merged(name: str, app: Any, generic: dict[str, Any], typed: Any) -> Any:
    """The app's root `app` (or None) with pgsift's `generic` fields it lacks and every
    field of the `typed` root; None when there is nothing at all."""
    taken = _graphql_names(app)
    clashes = sorted(taken & _graphql_names(typed))
    if clashes:
        raise ConfigError(
            f"{name}.{clashes[0]} is a field of both the app's {app.__name__} and pgsift's "
            "typed schema; rename the app's field (pgsift's names: docs/graphql-schema.md)"
        )
    attrs = {attr: field for attr, field in generic.items() if attr not in taken}
    bases: Iterable[Any] = [root for root in (app, typed) if root is not None]
    if not attrs and not bases:
        return None
    attrs["Meta"] = _meta(name)
    return type(name, (*bases, graphene.ObjectType), attrs)


def mount_graphene(
    base: graphene.Schema | None, model: TypeModel | None, settings: Settings
) -> graphene.Schema:
    """The app's schema `base` with pgsift's generic fields and `model`'s typed ones."""
    typed_query = typed_subscription = None
    if model is not None:
        types = GrapheneTypes(model, shared={"Op": Op})
        typed_query, typed_subscription = types.typed_roots(
            TypedResolvers(model, plain_input, max_query_rows=settings.gateway_max_query_rows)
        )
    app = (base.query, base.mutation, base.subscription) if base is not None else (None,) * 3
    try:
        schema = graphene.Schema(
            query=_merged("Query", app[0], {"rows": rows_field()}, typed_query),
            mutation=_merged("Mutation", app[1], {"mutate": mutate_field()}, None),
            subscription=_merged("Subscription", app[2], {"sync": sync_field()},
                                 typed_subscription),
        )  # fmt: skip
    except AssertionError as exc:  # graphene's way of saying two types share a name
        raise ConfigError(
            f"the app's schema and pgsift's typed schema clash: {exc}; rename the app's "
            "type, or leave the table out of [policies] (docs/graphql-schema.md)"
        ) from exc
    for_graphql_js(schema.graphql_schema)
    return schema


class GrapheneGateway:
    """`/graphql` for a graphene app: the websocket app and the HTTP endpoint, one schema."""

    def __init__(
        self,
        base: graphene.Schema,
        service: SyncService,
        authenticator: Authenticator,
        settings: Settings,
    ) -> None:
        self.base, self.settings = base, settings
        schema = mount_graphene(base, None, settings)
        self.websocket = graphene_websocket_app(schema, service, authenticator, settings)

        def context(request: Request) -> dict[str, Any]:
            try:
                claims = authenticator.claims_from_authorization(
                    request.headers.get("authorization")
                )
            except AuthError:
                claims = None  # the app's own fields may need none; pgsift's say so
            return {"request": request, "service": service, "claims": claims,
                    "budget": service.budget()}  # fmt: skip

        self.http = GrapheneHTTP(
            schema.graphql_schema,
            context=context,
            max_tokens=settings.gateway_max_graphql_tokens,
            max_keys=settings.loader_max_keys,
            json_limits=JsonLimits.from_settings(settings),
            graphiql=settings.gateway_graphiql,
        )

    def build(self, model: TypeModel) -> graphene.Schema:
        return mount_graphene(self.base, model, self.settings)

    def serve(self, schema: graphene.Schema) -> None:
        self.websocket.schema = schema.graphql_schema
        self.http.schema = schema.graphql_schema
