"""`POST /v1/rows`: the batch loader over HTTP, with the gateway's auth.

The body's size is bounded by the gateway's `BodyLimit`, its JSON by
`client_json`, its number of keys by the loader (`loader_max_keys`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgsift.middleware.errors import LoaderError, LoaderForbiddenError, LoaderUnavailableError
from pgsift.middleware.gateway import json_post
from pgsift.middleware.gateway.client_json import DEFAULT_LIMITS, JsonLimits
from pgsift.middleware.loader.slices import sliced
from pgsift.subscriptions.wire import RowWire

PATH = "/v1/rows"
_STATUSES = ((LoaderUnavailableError, 503), (LoaderForbiddenError, 403), (LoaderError, 400))


async def rows_endpoint(request: Request, limits: JsonLimits = DEFAULT_LIMITS) -> JSONResponse:
    """`{"table", "keys", "columns"?}` -> `{"rows": [...], "types": {...}}`, one row per key.

    Uses `request.app.state.authenticator` (claims from the Authorization
    header) and `request.app.state.loader` (a `BatchLoader`). Rows are in
    their wire form, in the order of the keys; a missing row and a forbidden
    one are both null. `types` names the type of each column returned
    (docs/wire-values.md): only those, so that a policy's hidden columns stay
    unnamed.
    """
    read = await json_post.claims_and_body(request, limits)
    if isinstance(read, JSONResponse):
        return read
    claims, body = read
    problem = _check_body(body)
    if problem:
        return json_post.error_response(400, problem)
    try:
        rows = await request.app.state.loader.load_many(
            body["table"], body["keys"], claims, body.get("columns")
        )
    except LoaderError as exc:
        return json_post.refusal(exc, _STATUSES)
    wire = request.app.state.loader.row_wire(body["table"])
    # Every row found has the same columns: those asked for, or all the caller may read.
    returned: Collection[str] = next((row.keys() for row in rows if row is not None), ())
    types = {c: t for c, t in wire.type_names().items() if c in returned}
    encoded = await sliced(rows, lambda _, row: row_json(row, wire))
    return JSONResponse({"rows": encoded, "types": types})


def rows_route(limits: JsonLimits = DEFAULT_LIMITS) -> Route:
    """The route to mount in the gateway app, reading bodies within `limits`."""
    return json_post.post_route(PATH, rows_endpoint, limits)


def _check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = sorted(set(body) - {"table", "keys", "columns"})
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    if not isinstance(body.get("table"), str):
        return '"table" must be a string'
    keys = body.get("keys")
    if not isinstance(keys, list):
        return '"keys" must be a list'
    columns = body.get("columns")
    if columns is not None and not (
        isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    ):
        return '"columns" must be a list of strings'
    return None


def row_json(row: dict[str, Any] | None, wire: RowWire) -> dict[str, Any] | None:
    """A loaded row in its wire form (`BatchLoader.row_wire` of its table)."""
    return None if row is None else wire.mapping(row)
