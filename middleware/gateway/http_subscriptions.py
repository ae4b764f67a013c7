"""A subscription sent over HTTP: a 400 saying to subscribe over the websocket.

Executed like a query, a subscription field has no value to return, and the
caller would get an internal error ("Unexpected error.") or a null it cannot
act on. Every HTTP view of /graphql (pgsift's strawberry view, a graphene app's)
asks `is_subscription` (or `names_subscription`, of a document it parsed already)
before executing, and answers `subscription_over_http()` (an error for
strawberry's result) or `refusal()` (the whole HTTP response).
"""

from __future__ import annotations

from graphql import DocumentNode, GraphQLError, OperationType, get_operation_ast, parse
from starlette.responses import JSONResponse

__all__ = [
    "CODE", "SUBSCRIPTION_OVER_HTTP", "is_subscription", "names_subscription", "refusal",
    "subscription_over_http",
]

SUBSCRIPTION_OVER_HTTP = (
    "subscriptions are served over websockets only: connect to /graphql with the "
    "graphql-transport-ws protocol (e.g. the graphql-ws client) and subscribe there"
)
CODE = "SubscriptionOverHTTP"  # the error's `extensions.code`


def is_subscription(query: str | None, operation_name: str | None, max_tokens: int) -> bool:
    """Whether the operation the request names is a subscription; False when it cannot
    be told (the view's own execution then reports what is wrong with the document)."""
    if not query:
        return False
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return False
    return names_subscription(document, operation_name)


def names_subscription(document: DocumentNode, operation_name: str | None) -> bool:
    """`is_subscription` for a view that parsed the document already."""
    operation = get_operation_ast(document, operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


def subscription_over_http() -> GraphQLError:
    """The error to answer with (HTTP status 400)."""
    return GraphQLError(SUBSCRIPTION_OVER_HTTP, extensions={"code": CODE})


def refusal() -> JSONResponse:
    """The 400 response of a GraphQL-over-HTTP view, in GraphQL's result form."""
    return JSONResponse({"data": None, "errors": [subscription_over_http().formatted]},
                        status_code=400)
