"""`Query.rows`: the batch loader over GraphQL (issue 5's contract).

`rows(table, keys, columns)` answers one entry per key, in order: the row in its
JSON form, or null for a key that does not exist or that the caller's policy
does not allow (indistinguishable on purpose). The same `BatchLoader` as
`POST /v1/rows` serves it, so GraphQL and HTTP callers share batches.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from pgsift.middleware.loader.http import row_json
from pgsift.subscriptions.errors import PgsiftError


async def load_rows(
    context: dict[str, Any], table: str, keys: list[Any], columns: list[str] | None
) -> list[dict[str, Any] | None]:
    """Rows of `table` by key for the caller whose claims are in `context`."""
    claims = context.get("claims")
    if claims is None:
        raise GraphQLError("not authenticated", extensions={"code": "AuthError"})
    loader = getattr(context["request"].app.state, "loader", None)
    if loader is None:
        raise GraphQLError(
            "this gateway runs without the batch loader", extensions={"code": "LoaderError"}
        )
    try:
        rows = await loader.load_many(table, keys, claims, columns)
    except PgsiftError as exc:
        raise GraphQLError(str(exc), extensions={"code": type(exc).__name__}) from exc
    wire = loader.row_wire(table)
    return [row_json(row, wire) for row in rows]
