"""The GraphQL `mutate` field's resolver, shared by the strawberry and graphene schemas.

    mutation { mutate(clientId: "3f1c...", mutations: [
        {id: 7, name: "create_issue", args: {team_id: 1, title: "..."}}]) {
      lastMutationId  results { id status message } } }

The same request check and runner as `POST /v1/mutate`
(`pgsift.middleware.mutations`). Statuses are the HTTP ones in upper case; what
makes HTTP answer 4xx/5xx is a GraphQL error here, with `extensions.code` the
error's class (`MutationError`, `MutationForbiddenError`, `MutationGapError`
with `extensions.lastMutationId`, `MutationUnavailableError`, `AuthError`) —
and then nothing of the request ran. GraphQL's `Int` is 32 bits: ids past
2^31 - 1 need `POST /v1/mutate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import GraphQLError

from pgsift.middleware.errors import MutationError, MutationGapError
from pgsift.middleware.mutations.request import MutationLimits, parse_request
from pgsift.middleware.mutations.runner import MutateResponse, MutationRunner


async def resolve_mutate(
    context: Mapping[str, Any], client_id: str, mutations: Iterable[Mapping[str, Any]]
) -> MutateResponse:
    """Run `mutations` (`{id, name, args}` each) for the caller whose claims are in `context`."""
    claims = context.get("claims")
    if claims is None:
        raise GraphQLError("not authenticated", extensions={"code": "AuthError"})
    state = context["request"].app.state
    runner: MutationRunner | None = getattr(state, "mutations", None)
    if runner is None:
        raise GraphQLError(
            "this gateway has no [mutators] configured", extensions={"code": "MutationError"}
        )
    body = {
        "clientId": client_id,
        "mutations": [
            {key: value for key, value in item.items() if not (key == "args" and value is None)}
            for item in mutations
        ],
    }
    try:
        request = parse_request(
            body, mutators=runner.mutators, limits=MutationLimits.from_settings(state.settings)
        )
        return await runner.run(request, claims)
    except MutationError as exc:
        extensions: dict[str, Any] = {"code": type(exc).__name__}
        if isinstance(exc, MutationGapError):
            extensions["lastMutationId"] = exc.last_mutation_id
        raise GraphQLError(str(exc), extensions=extensions) from exc
