"""What the gateway's JSON POST endpoints (`/v1/rows`, `/v1/mutate`) share.

The caller's claims from its Authorization header (else 401), the body's JSON
within the gateway's limits (else 400), errors as `{"error": message}`, and the
route that mounts such an endpoint with its limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgsift.middleware.errors import AuthError
from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import ClientJSONError, JsonLimits

Endpoint = Callable[[Request, JsonLimits], Awaitable[JSONResponse]]
# An endpoint's errors and their HTTP statuses, the most specific class first.
Statuses = Sequence[tuple[type[Exception], int]]


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def refusal(exc: Exception, statuses: Statuses) -> JSONResponse:
    """`exc` answered with the status of the first class in `statuses` it is an instance of."""
    status = next(status for kind, status in statuses if isinstance(exc, kind))
    return error_response(status, str(exc))


async def claims_and_body(
    request: Request, limits: JsonLimits
) -> tuple[dict[str, Any], Any] | JSONResponse:
    """The caller's claims (`app.state.authenticator`) and the body's JSON, or the
    401 / 400 response that refuses the request."""
    try:
        claims = request.app.state.authenticator.claims_from_authorization(
            request.headers.get("authorization")
        )
    except AuthError as exc:
        return error_response(401, str(exc))
    try:
        body = client_json.load(await request.body(), limits, "the body")
    except ClientJSONError as exc:
        return error_response(400, str(exc))
    return claims, body


def post_route(path: str, endpoint: Endpoint, limits: JsonLimits) -> Route:
    """The route to mount in the gateway app, reading bodies within `limits`."""

    async def bound(request: Request) -> JSONResponse:
        return await endpoint(request, limits)

    return Route(path, bound, methods=["POST"])
