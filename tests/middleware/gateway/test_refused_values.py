"""Values Postgres refuses are query errors over the websocket, not "Unexpected error."."""

from __future__ import annotations

from typing import Any

import pytest

from pgsift.middleware.gateway.client import OperationError, SyncConnection
from tests.middleware.gateway.harness import ISSUES_SCHEMA, gateway_settings, serve, token
from tests.middleware.gateway.pgrows import execute

TEAM_1 = token({"sub": "u1", "team_ids": [1]})


@pytest.mark.parametrize(
    ("query", "params", "message"),
    [
        ("SELECT id FROM issues WHERE title = $1", ["a\u0000b"], "U+0000"),
        ("SELECT id FROM issues WHERE title = $1", ["\ud800"], "lone surrogate"),
        ("SELECT id FROM issues WHERE title = 'a\u0000b'", [], "U+0000"),
        ("SELECT id FROM issues WHERE points = 1e999999", [], "out of range for type numeric"),
        ("SELECT id FROM issues WHERE points > $1", ["1e-99999"], "out of range for type numeric"),
    ],
)
async def test_values_postgres_refuses_are_query_errors(
    database_url: str, redis_url: str, query: str, params: list[Any], message: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA)
    settings = gateway_settings(database_url, redis_url)
    async with serve(settings) as url, await SyncConnection.connect(
        url, authorization=TEAM_1
    ) as conn:
        with pytest.raises(OperationError) as refused:
            _ = [m async for m in conn.sync(query, params)]
        error = refused.value.errors[0]
        assert error["extensions"]["code"] == "QueryError", error
        assert message in error["message"]
        # The connection is fine: a good query on it still works.
        first = await anext(aiter(conn.sync("SELECT id FROM issues WHERE team_id = 1")))
        assert first["upToDate"]
