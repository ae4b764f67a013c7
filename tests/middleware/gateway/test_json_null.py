"""JSON `null` in jsonb is a value, not SQL NULL: capture -> gateway -> client vs SELECT."""

from __future__ import annotations

from typing import Any

from pgsift.middleware.gateway.client import SyncConnection, key_of
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import eventually, gateway_settings, serve, token
from tests.middleware.gateway.pgrows import execute, expected
from tests.middleware.gateway.test_sync import Follower

SCHEMA = """
CREATE TABLE docs (id bigint PRIMARY KEY, meta jsonb);
ALTER TABLE docs REPLICA IDENTITY FULL;
INSERT INTO docs VALUES (1, 'null'), (2, NULL), (3, '{}'), (4, '"null"'), (5, '[]');
"""
CHANGES = (
    "INSERT INTO docs VALUES (6, 'null'), (7, NULL), (8, '[null]')",
    "UPDATE docs SET meta = 'null' WHERE id = 3",  # a value all along: IS NOT NULL stays true
    "UPDATE docs SET meta = NULL WHERE id = 1",  # JSON null -> SQL NULL: moves between shapes
    "UPDATE docs SET meta = 'null' WHERE id = 2",  # SQL NULL -> JSON null: the other way
    "UPDATE docs SET meta = '\"null\"' WHERE id = 6",
    "DELETE FROM docs WHERE id IN (4, 7)",
)
ANYONE = token({"sub": "u1"})


def held_deletes(follower: Follower) -> list[str]:
    """Keys the follower was told to delete although its copy never held them."""
    held: set[str] = set()
    strays = []
    for message in follower.messages:
        for change in message["changes"]:
            key = key_of(change["key"])
            if change["op"] == "DELETE":
                if key not in held:
                    strays.append(key)
                held.discard(key)
            else:
                held.add(key)
    return strays


async def test_json_null_is_not_sql_null_live_and_in_snapshots(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, SCHEMA)
    queries = {
        "SELECT id, meta FROM docs WHERE meta IS NOT NULL": [],
        "SELECT id, meta FROM docs WHERE meta IS NULL": [],
    }
    settings = gateway_settings(database_url, redis_url, policies={})
    with capturing(database_url, redis_url):
        async with serve(settings) as url, await SyncConnection.connect(
            url, authorization=ANYONE
        ) as conn:
            followers = {q: Follower(conn.sync(q, params)) for q, params in queries.items()}

            async def converged() -> bool:
                for query, follower in followers.items():
                    want: dict[str, Any] = await expected(database_url, query, [])
                    if not follower.copy.up_to_date or follower.copy.rows != want:
                        return False
                return True

            await eventually(converged, "snapshots equal SELECT")
            for statement in CHANGES:
                await execute(database_url, statement)
            await eventually(converged, "live copies equal SELECT")
            for follower in followers.values():
                assert held_deletes(follower) == []
                await follower.stop()
