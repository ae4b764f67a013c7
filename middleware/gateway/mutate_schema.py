"""`Mutation.mutate` for the strawberry schema (`build_schema` mounts `WriteMutation`)."""

from __future__ import annotations

import enum
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from pgsift.middleware.gateway.mutate import resolve_mutate
from pgsift.middleware.mutations.runner import MutateResponse


@strawberry.enum
class MutationStatus(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"
    DUPLICATE = "duplicate"


@strawberry.input
class MutationInput:
    id: int = strawberry.field(description="Consecutive per client, from 1.")
    name: str = strawberry.field(description="A mutator named in [mutators].")
    args: JSON | None = strawberry.field(default=None, description="A JSON object.")


@strawberry.type
class MutationResult:
    id: int
    status: MutationStatus
    message: str | None = strawberry.field(
        default=None, description="Why: for REFUSED and ERROR."
    )


@strawberry.type
class MutateResult:
    client_id: str
    last_mutation_id: int = strawberry.field(
        description="The client's ledger after this request: every mutation up to it has run."
    )
    results: list[MutationResult]


@strawberry.type(name="Mutation")
class WriteMutation:
    @strawberry.mutation(  # type: ignore[untyped-decorator]
        description="Run the client's mutations (each exactly once, in id order) through "
        "the app's mutators; one result per mutation."
    )
    async def mutate(
        self, info: Info[dict[str, Any], None], client_id: str, mutations: list[MutationInput]
    ) -> MutateResult:
        items = [{"id": m.id, "name": m.name, "args": m.args} for m in mutations]
        return to_graphql(await resolve_mutate(info.context, client_id, items))


def to_graphql(response: MutateResponse) -> MutateResult:
    return MutateResult(
        client_id=response.client_id,
        last_mutation_id=response.last_mutation_id,
        results=[
            MutationResult(id=r.id, status=MutationStatus(r.status), message=r.message)
            for r in response.results
        ],
    )
