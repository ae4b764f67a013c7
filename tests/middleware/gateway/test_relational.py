"""Relational subscriptions live: rows move in and out as memberships change.

Real capture, Redis and gateway; Postgres is the oracle: after each step the
client's copy equals `SELECT` of its query under its policy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.client import LocalCopy, OperationError, SyncConnection
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    POLICIES,
    eventually,
    gateway_settings,
    serve,
    serving,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected
from tests.middleware.gateway.refetching import kept_by, refollowing, settles

MEMBERSHIPS = """
CREATE TABLE memberships (id int PRIMARY KEY, team_id int, user_id text);
ALTER TABLE memberships REPLICA IDENTITY FULL;
INSERT INTO memberships VALUES (1, 1, 'u1'), (2, 3, 'u2');
INSERT INTO issues (id, team_id, title, secret) VALUES
    (1, 1, 'one', 's'), (2, 2, 'two', 's'), (3, 2, 'three', 's'), (4, 3, 'four', 's');
"""
TEAMS = "SELECT team_id FROM memberships WHERE user_id = $1"
RELATIONAL = f"SELECT id, title FROM issues WHERE team_id IN ({TEAMS})"
ORACLE = f"SELECT id, title FROM issues WHERE team_id IN ({TEAMS}) AND team_id = ANY(%s)"
# The policy form: which teams a caller sees comes from the memberships table.
MEMBER_POLICIES = {
    "public.issues": {
        "columns": ["id", "team_id", "title", "status", "points"],
        "row": "team_id IN (SELECT team_id FROM memberships WHERE user_id = auth.sub)",
    },
    "public.memberships": {"columns": ["id", "team_id", "user_id"], "row": "user_id = auth.sub"},
}
POLICY_ORACLE = (
    "SELECT id, team_id, title FROM issues WHERE "
    "team_id IN (SELECT team_id FROM memberships WHERE user_id = %s)"
)


@contextlib.asynccontextmanager
async def following(
    url: str, claims: dict[str, Any], query: str, params: list[Any]
) -> AsyncIterator[LocalCopy]:
    """A client keeping a copy of `query` until the block ends."""
    copy = LocalCopy()
    async with await SyncConnection.connect(url, authorization=token(claims)) as conn:

        async def run() -> None:
            async for message in conn.sync(query, params):
                copy.apply(message)

        async with kept_by(run, copy):
            yield copy


async def converges(copy: LocalCopy, database_url: str, sql: str, params: list[Any]) -> None:
    async def equal() -> bool:
        assert not copy.must_refetch
        return copy.rows == await expected(database_url, sql, params)

    await eventually(equal, f"the copy to equal {sql} {params}")


async def test_membership_changes_move_issues_in_and_out(database_url: str, redis_url: str) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    claims = {"sub": "u1", "team_ids": [1, 2, 3]}
    oracle_params: list[Any] = ["u1", [1, 2, 3]]
    with capturing(database_url, redis_url):
        async with serve(settings) as url, following(url, claims, RELATIONAL, ["u1"]) as copy:
            await converges(copy, database_url, ORACLE, oracle_params)
            assert set(copy.rows) == {'{"id": "1"}'}
            # The set is measured on /metrics.
            metrics_url = url.replace("ws://", "http://").replace("/graphql", "/metrics")
            async with httpx.AsyncClient() as http:
                scraped = (await http.get(metrics_url)).text
            assert "pgsift_gateway_inner_sets 1.0" in scraped
            # Joining team 2 moves its two issues in, with their full rows.
            await execute(database_url, "INSERT INTO memberships VALUES (3, 2, 'u1')")
            await converges(copy, database_url, ORACLE, oracle_params)
            assert {row["title"] for row in copy.rows.values()} == {"one", "two", "three"}
            # Leaving team 1 (and an issue moving to team 2 in the same transaction).
            await execute(
                database_url,
                "DELETE FROM memberships WHERE id = 1",
                "UPDATE issues SET team_id = 2, title = 'moved' WHERE id = 4",
            )
            await converges(copy, database_url, ORACLE, oracle_params)
            # A membership of team 4, whose issues the token's policy does not allow.
            await execute(
                database_url,
                "INSERT INTO memberships VALUES (4, 4, 'u1')",
                "INSERT INTO issues (id, team_id, title) VALUES (5, 4, 'hidden')",
            )
            await execute(database_url, "UPDATE issues SET title = 'edited' WHERE id = 2")
            await converges(copy, database_url, ORACLE, oracle_params)
            assert '{"id": "5"}' not in copy.rows


async def test_sessions_of_one_shape_share_one_move_read(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    app = create_app(settings)
    claims = {"sub": "u1", "team_ids": [1, 2, 3]}
    with capturing(database_url, redis_url):
        async with (
            serving(app, settings) as url,
            following(url, claims, RELATIONAL, ["u1"]) as first,
            following(url, claims, RELATIONAL, ["u1"]) as second,
            following(url, claims, RELATIONAL, ["u2"]) as other,
        ):
            reads = app.state.service.tailer.sets.reads
            started = reads.started
            # Two moves in one transaction (u1 joins teams 2 and 3), one shape moved.
            await execute(
                database_url,
                "INSERT INTO memberships VALUES (3, 2, 'u1')",
                "INSERT INTO memberships VALUES (4, 3, 'u1')",
            )
            for copy in (first, second):
                await converges(copy, database_url, ORACLE, ["u1", [1, 2, 3]])
                assert len(copy.rows) == 4
            await converges(other, database_url, ORACLE, ["u2", [1, 2, 3]])
            assert reads.started == started + 1  # one statement for both sessions


async def test_a_policy_subquery_follows_memberships(database_url: str, redis_url: str) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    settings = gateway_settings(database_url, redis_url, policies=MEMBER_POLICIES)
    query = "SELECT id, team_id, title FROM issues WHERE title <> $1"
    with capturing(database_url, redis_url):
        async with (
            serve(settings) as url,
            following(url, {"sub": "u2"}, query, ["x"]) as u2,
            following(url, {"sub": "u1"}, query, ["x"]) as u1,
        ):
            await converges(u1, database_url, POLICY_ORACLE, ["u1"])
            await converges(u2, database_url, POLICY_ORACLE, ["u2"])
            await execute(database_url, "INSERT INTO memberships VALUES (3, 2, 'u2')")
            await execute(database_url, "UPDATE memberships SET user_id = 'u2' WHERE id = 1")
            await converges(u1, database_url, POLICY_ORACLE, ["u1"])
            await converges(u2, database_url, POLICY_ORACLE, ["u2"])
            assert u1.rows == {}
            assert len(u2.rows) == 4


async def test_an_inner_select_may_not_read_columns_its_policy_hides(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {
        **POLICIES,
        "public.memberships": {"columns": ["id", "team_id"], "row": "team_id = ANY(auth.team_ids)"},
    }
    settings = gateway_settings(database_url, redis_url, policies=policies)
    async with (
        serve(settings) as url,
        await SyncConnection.connect(
            url, authorization=token({"sub": "u1", "team_ids": [1, 2]})
        ) as conn,
    ):
        # user_id is hidden: filtering on it would leak which teams u1 belongs to.
        with pytest.raises(OperationError) as refused:
            _ = [m async for m in conn.sync(RELATIONAL, ["u1"])]
        assert "user_id" in refused.value.errors[0]["message"]


async def sync_until_up_to_date(
    url: str, claims: dict[str, Any], copy: LocalCopy, query: str, params: list[Any]
) -> None:
    """Subscribe (from the copy's cursor, if any) until up to date or told to refetch."""
    copy.up_to_date = False
    async with await SyncConnection.connect(url, authorization=token(claims)) as conn:
        async for message in conn.sync(query, params, copy.cursor):
            copy.apply(message)
            if copy.up_to_date or copy.must_refetch:
                return


async def test_a_resume_continues_unless_the_sets_changed_meanwhile(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    claims = {"sub": "u1", "team_ids": [1, 2, 3]}
    oracle_params: list[Any] = ["u1", [1, 2, 3]]
    copy = LocalCopy()
    with capturing(database_url, redis_url):
        async with serve(settings) as url:
            await sync_until_up_to_date(url, claims, copy, RELATIONAL, ["u1"])
            assert copy.cursor is not None
            # Only outer rows changed while away: the resume replays them.
            await execute(database_url, "UPDATE issues SET title = 'away' WHERE id = 1")
            await execute(
                database_url, "INSERT INTO issues (id, team_id, title) VALUES (6, 1, 'new')"
            )
            async with following(url, claims, "SELECT id FROM issues WHERE id = $1", [6]) as marker:
                await eventually(lambda: len(marker.rows) == 1, "the insert to be routed")
            await sync_until_up_to_date(url, claims, copy, RELATIONAL, ["u1"])
            assert not copy.must_refetch
            await converges(copy, database_url, ORACLE, oracle_params)
            # A membership changed while away: the copy cannot be caught up by the feed.
            # (Resumed only once the gateway delivered the change: resumed before, the
            # catch-up ends before it and the change moves the rows in live instead.)
            async with following(url, claims, "SELECT id FROM memberships WHERE id = $1",
                                 [3]) as marker:
                await execute(database_url, "INSERT INTO memberships VALUES (3, 2, 'u1')")
                await eventually(lambda: len(marker.rows) == 1, "the membership to be routed")
            await sync_until_up_to_date(url, claims, copy, RELATIONAL, ["u1"])
            assert copy.must_refetch


async def test_sets_past_the_memory_bound_end_in_must_refetch(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(
        database_url, redis_url, policies=policies, relational_max_set_bytes=1
    )
    copy = LocalCopy()
    with capturing(database_url, redis_url):
        async with serve(settings) as url:
            claims = {"sub": "u1", "team_ids": [1, 2, 3]}
            await sync_until_up_to_date(url, claims, copy, RELATIONAL, ["u1"])
    assert copy.must_refetch and not copy.rows


NESTED_2 = (
    "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM memberships WHERE "
    "user_id IN (SELECT user_id FROM memberships WHERE team_id = $1))"
)
NESTED_3 = NESTED_2.replace(
    "team_id = $1", "team_id IN (SELECT team_id FROM memberships WHERE id = $1)"
)
NESTED_4 = NESTED_3.replace(
    "id = $1", "id IN (SELECT id FROM memberships WHERE team_id = $1)"
)


NESTED_ORACLE = "SELECT id FROM issues WHERE {} AND team_id = ANY(%s)"


@pytest.mark.parametrize("nested", [NESTED_2, NESTED_3])
async def test_nested_inner_selects_are_served_live(
    database_url: str, redis_url: str, nested: str
) -> None:
    """Two and three levels (the default depth): a membership change of a set another
    set reads moves the rows above it in, without a refetch, and the copy is exact."""
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    claims = {"sub": "u1", "team_ids": [1, 2, 3]}
    where = nested.split(" WHERE ", 1)[1].replace("$1", "%s")
    sql, params = NESTED_ORACLE.format(where), [1, [1, 2, 3]]
    with capturing(database_url, redis_url):
        async with serve(settings) as url, refollowing(url, claims, nested, [1]) as copy:
            await settles(copy, database_url, sql, params)
            assert set(copy.rows) == {'{"id": "1"}'}
            # u2 joins team 1: the teams of u2 (3) are in the outer set, by the deepest one.
            await execute(database_url, "INSERT INTO memberships VALUES (3, 1, 'u2')")
            await settles(copy, database_url, sql, params)
            assert set(copy.rows) == {'{"id": "1"}', '{"id": "4"}'}
            assert copy.refetches == 0
            # An outer row moves in by its own change, as for any shape.
            await execute(database_url, "UPDATE issues SET team_id = 3 WHERE id = 2")
            await settles(copy, database_url, sql, params)
            assert '{"id": "2"}' in copy.rows


async def test_deeper_than_the_setting_is_refused_live(database_url: str, redis_url: str) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    async with (
        serve(settings) as url,
        await SyncConnection.connect(
            url, authorization=token({"sub": "u1", "team_ids": [1]})
        ) as conn,
    ):
        with pytest.raises(OperationError) as refused:
            _ = [m async for m in conn.sync(NESTED_4, [1])]
        assert "nested too deeply" in refused.value.errors[0]["message"]


async def test_a_query_subquery_reads_under_the_inner_tables_policy(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {
        **POLICIES,
        "public.memberships": {
            "columns": ["id", "team_id", "user_id"],
            "row": "user_id = auth.sub",
        },
    }
    settings = gateway_settings(database_url, redis_url, policies=policies)
    claims = {"sub": "u1", "team_ids": [1, 2, 3]}
    # u1 asks for the teams of u2: the policy of memberships shows u1 only its own rows.
    oracle = (
        "SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM memberships "
        "WHERE user_id = %s AND user_id = 'u1') AND team_id = ANY(%s)"
    )
    with capturing(database_url, redis_url):
        async with serve(settings) as url, following(url, claims, RELATIONAL, ["u2"]) as copy:
            await converges(copy, database_url, oracle, ["u2", [1, 2, 3]])
            await execute(database_url, "INSERT INTO memberships VALUES (3, 2, 'u2')")
            plain = "SELECT id, title FROM issues WHERE team_id = $1"
            async with following(url, claims, plain, [2]) as marker:
                await execute(database_url, "UPDATE issues SET title = 'seen?' WHERE team_id = 2")
                await eventually(
                    lambda: {r["title"] for r in marker.rows.values()} == {"seen?"},
                    "the update to reach a plain subscription of the same gateway",
                )
            await converges(copy, database_url, oracle, ["u2", [1, 2, 3]])
            assert copy.rows == {}


async def test_subscriptions_attaching_at_once_are_each_exact(
    database_url: str, redis_url: str
) -> None:
    """Attaches waiting together are served in one snapshot (`SetLoads`): two of them
    share a set (u1 twice), and each copy follows its own memberships afterwards."""
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    policies = {**POLICIES, "public.memberships": {}}
    settings = gateway_settings(database_url, redis_url, policies=policies)
    claims = {"sub": "u1", "team_ids": [1, 2, 3]}
    users = ["u1", "u1", "u2", "u3"]
    copies = [LocalCopy() for _ in users]
    with capturing(database_url, redis_url):
        async with serve(settings) as url, await SyncConnection.connect(
            url, authorization=token(claims)
        ) as conn:

            async def follow(user: str, copy: LocalCopy) -> None:
                async for message in conn.sync(RELATIONAL, [user]):
                    copy.apply(message)

            pairs = list(zip(users, copies, strict=True))
            tasks = [asyncio.create_task(follow(user, copy)) for user, copy in pairs]
            try:
                for user, copy in pairs:
                    await converges(copy, database_url, ORACLE, [user, [1, 2, 3]])
                assert [len(copy.rows) for copy in copies] == [1, 1, 1, 0]
                await execute(
                    database_url, "INSERT INTO memberships VALUES (3, 2, 'u1'), (4, 2, 'u3')"
                )
                for user, copy in pairs:
                    await converges(copy, database_url, ORACLE, [user, [1, 2, 3]])
                assert [len(copy.rows) for copy in copies] == [3, 3, 1, 2]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
