"""pgsift's fields in a strawberry schema: typed and generic, next to an app's own.

    schema = strawberry.Schema(query=Query, mutation=Mutation)      # the app's
    app = create_app(settings, strawberry_schema=schema)            # pgsift.middleware.gateway.app

`create_app` calls `mount_strawberry` once the catalog is read (and again when
it changes): the app's `Query`, `Mutation` and `Subscription` are merged with
pgsift's generic fields (`rows`, `mutate`, `sync`) and the typed ones
(`issues`, `issuesByKey`, `Subscription.issues`, ...), the app's config and
extensions are kept, and pgsift's limits (tokens, keys) and error masking
apply to the whole schema. A field or type name on both sides is refused with
a `ConfigError` naming it, never silently shadowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import strawberry
from strawberry.exceptions import DuplicatedTypeName
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.gateway.mutate_schema import WriteMutation
from pgsift.middleware.gateway.schema import Op, Query, Subscription, build_schema
from pgsift.middleware.graphql.directives import for_graphql_js
from pgsift.middleware.graphql.resolvers import TypedResolvers
from pgsift.middleware.graphql.strawberry_types import StrawberryTypes, plain_input
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.typemodel import TypeModel


def _merged(name: str, roots: Iterable[type | None]) -> type | None:
    present = tuple(root for root in roots if root is not None)
    if not present:
        return None
    seen: dict[str, type] = {}
    for root in present:
        definition = root.__strawberry_definition__  # type: ignore[attr-defined]
        for field in definition.fields:
            field_name = field.graphql_name or field.name
            other = seen.get(field_name)
            if other is not None:
                raise ConfigError(
                    f"{name}.{field_name} is a field of both {other.__name__} and "
                    f"{root.__name__}; rename the app's field (pgsift's names: "
                    "docs/graphql-schema.md)"
                )
            seen[field_name] = root
    return merge_types(name, present) if len(present) > 1 else present[0]


def mount_strawberry(
    base: strawberry.Schema | None, model: TypeModel | None, settings: Settings
) -> strawberry.Schema:
    """The app's schema `base` (None: none) with pgsift's generic fields and the typed
    fields of `model` (None: generic only); ConfigError on a name both sides use."""
    typed_query: type | None = None
    typed_subscription: type | None = None
    scalar_map: dict[object, Any] = {}
    if model is not None:
        types = StrawberryTypes(model, shared={"Op": Op})
        typed_query, typed_subscription = types.typed_roots(
            TypedResolvers(model, plain_input, max_query_rows=settings.gateway_max_query_rows)
        )
        scalar_map = types.scalar_map
    app_query = base.query if base is not None else None
    app_mutation = base.mutation if base is not None else None
    app_subscription = base.subscription if base is not None else None
    config = base.config if base is not None else StrawberryConfig()
    config = dataclasses.replace(config, scalar_map={**config.scalar_map, **scalar_map})
    query = _merged("Query", (app_query, Query, typed_query))
    mutation = _merged("Mutation", (app_mutation, WriteMutation))
    subscription = _merged("Subscription", (app_subscription, Subscription, typed_subscription))
    assert query is not None and subscription is not None  # pgsift's own are always there
    try:
        schema = build_schema(
            max_tokens=settings.gateway_max_graphql_tokens,
            max_keys=settings.loader_max_keys,
            query=query,
            mutation=mutation,
            subscription=subscription,
            config=config,
            extensions=list(base.extensions) if base is not None else (),
        )
    except DuplicatedTypeName as exc:
        raise ConfigError(
            f"the app's schema and pgsift's typed schema both define a type: {exc}; rename "
            "the app's type, or leave the table out of [policies] (docs/graphql-schema.md)"
        ) from exc
    for_graphql_js(schema._schema)
    return schema
