"""GraphQL over HTTP for a graphene schema: `POST /graphql` and GraphiQL on `GET /graphql`.

graphene has no server of its own; this endpoint runs an app's queries and
mutations (and pgsift's typed reads) with graphql-core, under the gateway's
rules: the body is client JSON (`client_json`, depth-bounded, 400), the
document at most `gateway_max_graphql_tokens` tokens, its `rows` fields at
most `loader_max_keys` keys together, errors masked as on the websocket
(`error_masking`), a subscription answered with a 400 saying to use the
websocket. A browser's GET gets strawberry's GraphiQL page unless
`gateway_graphiql` is off (then 405, as for every other GET).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    execute,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.http.ides import get_graphql_ide_html

from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import ClientJSONError, JsonLimits
from pgsift.middleware.gateway.error_masking import masked
from pgsift.middleware.gateway.http_subscriptions import names_subscription, refusal
from pgsift.middleware.gateway.rows import row_keys_error

# An HTTP request -> the operation's context (claims None when it carries no valid token).
HTTPContext = Callable[[Request], dict[str, Any]]


def _bad_request(message: str, code: str = "BadRequest") -> JSONResponse:
    error = {"message": message, "extensions": {"code": code}}
    return JSONResponse({"data": None, "errors": [error]}, status_code=400)


@dataclass(eq=False)  # an ASGI app: compared and hashed by identity
class GrapheneHTTP:
    """An ASGI endpoint serving `schema` (swappable: `self.schema`) over HTTP."""

    schema: GraphQLSchema
    _: KW_ONLY
    context: HTTPContext
    max_tokens: int
    max_keys: int
    json_limits: JsonLimits
    graphiql: bool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        if request.method == "GET" and self.graphiql and "text/html" in request.headers.get(
            "accept", ""
        ):
            return HTMLResponse(get_graphql_ide_html("graphiql"))
        if request.method != "POST":
            return Response("GraphQL takes POST here", status_code=405,
                            headers={"Allow": "POST"})  # fmt: skip
        try:
            body = client_json.load(await request.body(), self.json_limits, "the request's JSON")
        except ClientJSONError as exc:
            return _bad_request(str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _bad_request('the body must be a JSON object with a "query" string')
        variables = body.get("variables") or {}
        operation_name = body.get("operationName")
        if not isinstance(variables, dict) or not isinstance(operation_name, str | None):
            return _bad_request('"variables" must be an object, "operationName" a string')
        try:
            document = parse(body["query"], max_tokens=self.max_tokens)
        except GraphQLSyntaxError as exc:
            return _bad_request(exc.message, "GraphQLSyntaxError")
        if names_subscription(document, operation_name):
            return refusal()
        errors = validate(self.schema, document)
        if errors:
            return JSONResponse(
                {"data": None, "errors": [e.formatted for e in errors]}, status_code=400
            )
        refused = row_keys_error(document, operation_name, variables, self.max_keys)
        if refused is not None:
            return JSONResponse({"data": None, "errors": [refused.formatted]}, status_code=400)
        result = execute(
            self.schema, document, variable_values=variables,
            context_value=self.context(request), operation_name=operation_name,
        )  # fmt: skip
        if not isinstance(result, ExecutionResult):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [masked(_error(e)).formatted for e in result.errors]
        return JSONResponse(payload)


def _error(error: Exception) -> GraphQLError:
    return error if isinstance(error, GraphQLError) else GraphQLError(str(error))
