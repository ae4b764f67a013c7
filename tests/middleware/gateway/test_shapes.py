"""The shape cache: one shape per (query, params, claims read) and catalog, the last `size`."""

from __future__ import annotations

from typing import Any

import psycopg

from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.client import SyncConnection
from pgsift.middleware.gateway.shapes import MAX_KEY_CHARS, ShapeCache, claims_named
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.shape import Shape
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    eventually,
    gateway_settings,
    serving,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected
from tests.middleware.gateway.test_sync import Follower

QUERY = "SELECT id, title FROM issues WHERE team_id = $1"


def test_keys_tell_apart_what_equality_would_not() -> None:
    keys = {ShapeCache().key(QUERY, [p], {}) for p in (1, 1.0, True, "1")}
    assert len(keys) == 4
    assert ShapeCache().key(QUERY, [1], {"sub": "a"}) != ShapeCache().key(QUERY, [1], {"sub": "b"})
    # Claims in any order are the same claims.
    assert ShapeCache().key(QUERY, [], {"a": 1, "b": 2}) == ShapeCache().key(
        QUERY, [], {"b": 2, "a": 1}
    )
    assert ShapeCache().key(QUERY, [], {"when": object()}) is None
    assert ShapeCache().key(QUERY, ["x" * MAX_KEY_CHARS], {}) is None


def test_shapes_are_kept_per_catalog_and_the_last_ones_only(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS issues (id int PRIMARY KEY, team_id int, "
                     "title text)")
        conn.commit()
        catalog, newer = load_catalog(conn), load_catalog(conn)
    cache = ShapeCache(size=2)

    def parsed(team: Any) -> Shape:
        return Shape.parse(QUERY, params=[team], catalog=catalog)

    keys = [ShapeCache().key(QUERY, [team], {}) for team in (1, 2, 3)]
    assert cache.get(catalog, keys[0]) is None
    one = parsed(1)
    cache.put(catalog, keys[0], one)
    assert cache.get(catalog, keys[0]) is one
    assert cache.get(catalog, keys[1]) is None
    cache.put(catalog, keys[1], parsed(2))
    cache.get(catalog, keys[0])  # used last: kept
    cache.put(catalog, keys[2], parsed(3))
    assert cache.get(catalog, keys[1]) is None  # the least recently used went
    assert cache.get(catalog, keys[0]) is one
    # A new catalog (a schema change): nothing made against the old one is used.
    assert cache.get(newer, keys[0]) is None
    assert len(cache) == 0
    cache.put(catalog, keys[0], one)  # made against the old one meanwhile: not kept
    assert cache.get(newer, keys[0]) is None


def policies(**rows: str) -> dict[str, Policy]:
    return {f"public.{t}": Policy.from_config(t, {"row": row}) for t, row in rows.items()}


def test_the_claims_named_by_policies_are_found_by_parsing_them() -> None:
    named = claims_named(policies(
        issues="team_id = ANY(auth.team_ids) OR assignee = AUTH.sub",
        projects='org IN (SELECT org FROM orgs WHERE owner = "auth"."Who")',
    ))
    assert named == frozenset({"team_ids", "sub", "Who"})
    assert claims_named(None) == frozenset()
    # `auth` other than as `auth.<claim>`: not sure what it reads, so every claim counts.
    assert claims_named(policies(issues="team_id = (SELECT auth FROM t LIMIT 1)")) is None


def test_callers_differing_only_in_claims_no_policy_reads_share_a_key() -> None:
    cache = ShapeCache(read_claims=frozenset({"team_ids"}))
    alice = {"sub": "alice", "team_ids": [1], "exp": 100, "iat": 1}
    bob = {"sub": "bob", "team_ids": [1], "exp": 200, "iat": 2}
    assert cache.key(QUERY, [1], alice) == cache.key(QUERY, [1], bob)
    assert cache.key(QUERY, [1], alice) != cache.key(QUERY, [1], {**bob, "team_ids": [2]})
    # A caller without the claim is not one with it (the parse would fail for them).
    assert cache.key(QUERY, [1], alice) != cache.key(QUERY, [1], {"sub": "carol"})
    # The query itself may read claims: then every claim is in the key.
    for query in (QUERY + " AND title = auth.sub", QUERY + ' AND title = U&"\\0061uth".sub'):
        assert cache.key(query, [1], alice) != cache.key(query, [1], bob)
    # Not told which claims policies read: every claim counts.
    assert ShapeCache().key(QUERY, [1], alice) != ShapeCache().key(QUERY, [1], bob)


async def test_a_policy_shares_shapes_across_tokens_but_never_rows_across_teams(
    database_url: str, redis_url: str
) -> None:
    # The harness policy: `team_id = ANY(auth.team_ids)`. Alice and Bob (team 1, tokens
    # with different sub and exp) share one shape; Carol (team 2) has her own.
    await execute(database_url, ISSUES_SCHEMA)
    await execute(
        database_url,
        "INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 1, 'c')",
    )
    callers = {
        "alice": ([1], token({"sub": "alice", "team_ids": [1]}, expires_in=3600)),
        "bob": ([1], token({"sub": "bob", "team_ids": [1]}, expires_in=7200)),
        "carol": ([2], token({"sub": "carol", "team_ids": [2]}, expires_in=3600)),
    }
    query = "SELECT id, title FROM issues"
    oracle = "SELECT id, title FROM issues WHERE team_id = ANY($1)"
    settings = gateway_settings(database_url, redis_url)
    app = create_app(settings)
    with capturing(database_url, redis_url):
        async with serving(app, settings) as url:
            followers: dict[str, tuple[list[int], Follower]] = {}
            connections = []
            for name, (teams, authorization) in callers.items():
                conn = await SyncConnection.connect(url, authorization=authorization)
                connections.append(conn)
                followers[name] = (teams, Follower(conn.sync(query)))

            async def converged() -> bool:
                for teams, follower in followers.values():
                    want = await expected(database_url, oracle, [teams])
                    if not follower.copy.up_to_date or follower.copy.rows != want:
                        return False
                return True

            await eventually(converged, "snapshots equal SELECT under each policy")
            await execute(database_url, "UPDATE issues SET team_id = 2 WHERE id = 1")
            await execute(
                database_url, "INSERT INTO issues (id, team_id, title) VALUES (4, 2, 'd')"
            )
            await eventually(converged, "live copies equal SELECT under each policy")
            shapes = app.state.service.shapes
            assert (len(shapes), shapes.hits) == (2, 1)
            for _, follower in followers.values():
                await follower.stop()
            for conn in connections:
                await conn.close()
