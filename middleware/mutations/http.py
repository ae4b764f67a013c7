"""`POST /v1/mutate`: a client's mutations over HTTP, with the gateway's auth.

    POST /v1/mutate   Authorization: Bearer <jwt>
    {"clientId": "3f1c...", "mutations": [{"id": 7, "name": "create_issue", "args": {...}}]}

    200 {"clientId": "3f1c...", "lastMutationId": 7,
         "results": [{"id": 7, "status": "ok"}]}        # or refused / error + message,
                                                        # or duplicate (ran before)
    400 bad input   401 no or bad token   403 another user's client id
    409 a gap ({"lastMutationId": n}: resend from n + 1)   413 body too big
    503 database unavailable or busy: resend the same request

On any status but 200 nothing of the request ran. `mutations: []` asks for the
client's `lastMutationId` only. The body is bounded as every gateway body is: its
size by `BodyLimit` (`gateway_max_body_bytes`, 413), its JSON by `client_json`
(`gateway_max_json_depth`, 400).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgsift.middleware.errors import (
    MutationError,
    MutationForbiddenError,
    MutationGapError,
    MutationUnavailableError,
)
from pgsift.middleware.gateway import json_post
from pgsift.middleware.gateway.client_json import DEFAULT_LIMITS, JsonLimits
from pgsift.middleware.mutations.request import MutationLimits, parse_request
from pgsift.middleware.mutations.runner import MutationRunner

PATH = "/v1/mutate"
_STATUSES = ((MutationForbiddenError, 403), (MutationUnavailableError, 503), (MutationError, 400))


async def mutate_endpoint(request: Request, limits: JsonLimits = DEFAULT_LIMITS) -> JSONResponse:
    """Run the body's mutations for the caller (`app.state.mutations`: a MutationRunner)."""
    state = request.app.state
    read = await json_post.claims_and_body(request, limits)
    if isinstance(read, JSONResponse):
        return read
    claims, body = read
    runner: MutationRunner = state.mutations
    try:
        parsed = parse_request(
            body, mutators=runner.mutators, limits=MutationLimits.from_settings(state.settings)
        )
        response = await runner.run(parsed, claims)
    except MutationGapError as exc:
        return JSONResponse(
            {"error": str(exc), "lastMutationId": exc.last_mutation_id}, status_code=409
        )
    except MutationError as exc:
        return json_post.refusal(exc, _STATUSES)
    return JSONResponse(response.to_json())


def mutate_route(limits: JsonLimits = DEFAULT_LIMITS) -> Route:
    """The route to mount in the gateway app, reading bodies within `limits`."""
    return json_post.post_route(PATH, mutate_endpoint, limits)
