"""Row policies need REPLICA IDENTITY FULL: without the old row, a delete would reach
every subscriber of the table, telling callers the policy hides a row's key."""

from __future__ import annotations

import pytest

from pgsift.middleware.gateway.client import OperationError, SyncConnection
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

QUERY = "SELECT id, title FROM issues WHERE team_id = $1"
TEAM_1 = token({"sub": "u1", "team_ids": [1]})


async def test_a_row_policy_table_without_full_replica_identity_is_refused(
    database_url: str, redis_url: str
) -> None:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "ALTER TABLE issues REPLICA IDENTITY DEFAULT",
        "INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'one'), (2, 2, 'two')",
    )
    settings = gateway_settings(database_url, redis_url)
    async with serve(settings) as url, await SyncConnection.connect(
        url, authorization=TEAM_1
    ) as conn:
        with pytest.raises(OperationError) as refused:
            _ = [m async for m in conn.sync(QUERY, [1])]
        message = refused.value.errors[0]["message"]
        assert "ALTER TABLE public.issues REPLICA IDENTITY FULL" in message

        # Once the table is altered, the same connection can subscribe.
        await execute(database_url, "ALTER TABLE issues REPLICA IDENTITY FULL")

        async def subscribes() -> bool:
            try:
                async for m in conn.sync(QUERY, [1]):
                    return bool(m["changes"]) and m["changes"][0]["key"] == {"id": "1"}  # int8
            except OperationError:
                return False
            return False

        await eventually(subscribes, "subscribed after ALTER TABLE")
