"""Subscriptions reading inner selects are refused by `sync` until rows can move live."""

from __future__ import annotations

import pytest

from pgsift.middleware.gateway.client import OperationError, SyncConnection
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    POLICIES,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

MEMBERSHIPS = """
CREATE TABLE memberships (team_id int, user_id text, PRIMARY KEY (team_id, user_id));
INSERT INTO memberships VALUES (1, 'u1');
INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'one'), (2, 2, 'two');
"""
RELATIONAL = (
    "SELECT id, title FROM issues WHERE team_id IN "
    "(SELECT team_id FROM memberships WHERE user_id = $1)"
)


async def test_sync_refuses_inner_selects_with_a_clear_error(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    async with (
        serve(settings) as url,
        await SyncConnection.connect(
            url, authorization=token({"sub": "u1", "team_ids": [1, 2]})
        ) as conn,
    ):
        with pytest.raises(OperationError) as refused:
            _ = [m async for m in conn.sync(RELATIONAL, ["u1"])]
        assert "not served live yet" in refused.value.errors[0]["message"]
        # The connection goes on serving other subscriptions.
        async for message in conn.sync("SELECT id, title FROM issues WHERE team_id = $1", [1]):
            # bigint keys travel as decimal strings (docs/wire-values.md).
            assert [c["key"] for c in message["changes"]] == [{"id": "1"}]
            break
