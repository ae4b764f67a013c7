"""`mutate` for apps on graphene 3: mount it into the app's own Mutation type.

    class Mutation(graphene.ObjectType):
        mutate = mutate_field()
        ...                                         # the app's own mutations

    schema = graphene.Schema(query=Query, mutation=Mutation, subscription=Subscription)

Its types (`MutationInput`, `MutateResult`, `MutationResult`, `MutationStatus`)
match the strawberry schema's, so the same clients work against either.
"""

from __future__ import annotations

from typing import Any

import graphene  # type: ignore[import-untyped]
from graphql import GraphQLResolveInfo

from pgsift.middleware.gateway.graphene_adapter import JSON, MutationOutcome
from pgsift.middleware.gateway.mutate import resolve_mutate


class MutationInput(graphene.InputObjectType):  # type: ignore[misc]
    id = graphene.Int(required=True)
    name = graphene.String(required=True)
    args = JSON()


class MutationResult(MutationOutcome):
    pass


class MutateResult(graphene.ObjectType):  # type: ignore[misc]
    client_id = graphene.String(required=True)
    last_mutation_id = graphene.Int(required=True)
    results = graphene.List(graphene.NonNull(MutationResult), required=True)


async def resolve(
    root: Any, info: GraphQLResolveInfo, client_id: str, mutations: list[Any]
) -> dict[str, Any]:
    response = await resolve_mutate(info.context, client_id, [dict(m) for m in mutations])
    return {
        "client_id": response.client_id,
        "last_mutation_id": response.last_mutation_id,
        "results": [
            {"id": r.id, "status": r.status, "message": r.message} for r in response.results
        ],
    }


def mutate_field() -> graphene.Field:
    """`mutate(clientId: String!, mutations: [MutationInput!]!): MutateResult!`"""
    return graphene.Field(
        MutateResult,
        required=True,
        client_id=graphene.String(required=True),
        mutations=graphene.List(graphene.NonNull(MutationInput), required=True),
        resolver=resolve,
        description="Run the client's mutations (each exactly once, in id order) through "
        "the app's mutators; one result per mutation.",
    )
