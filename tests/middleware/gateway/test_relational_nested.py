"""Nested inner selects live: a change at any level shows in the copy, exactly.

`issues` of the teams whose project lead is a member of an org (two levels),
or of an org on a plan (three levels), in the query or in the issues' policy.
A change of a set other sets read makes those judge their mirrored rows
again, and the outer rows move in and out as INSERT / DELETE
(docs/relational.md, "Nested sets"): no refetch (`refetching.refollowing`
counts them). Real capture, Redis and gateway; Postgres is the
oracle: after each step the client's copy equals `SELECT` of its query under
its policy.
"""

from __future__ import annotations

from typing import Any

import pytest

from pgsift.middleware.gateway.client import OperationError, SyncConnection
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    POLICIES,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute
from tests.middleware.gateway.refetching import refollowing, settles

NESTED_SCHEMA = """
CREATE TABLE members (id int PRIMARY KEY, user_id text NOT NULL, org int NOT NULL);
CREATE TABLE projects (id int PRIMARY KEY, team_id int NOT NULL, lead text NOT NULL);
CREATE TABLE orgs (id int PRIMARY KEY, org int NOT NULL, plan text NOT NULL);
INSERT INTO orgs VALUES (1, 1, 'pro'), (2, 2, 'free');
INSERT INTO members VALUES (1, 'ann', 1), (2, 'bob', 2);
INSERT INTO projects VALUES (1, 1, 'ann'), (2, 2, 'bob'), (3, 3, 'cat');
INSERT INTO issues (id, team_id, title, secret) VALUES
    (1, 1, 'one', 's'), (2, 2, 'two', 's'), (3, 2, 'three', 's'), (4, 3, 'four', 's'),
    (5, 4, 'five', 's');
"""
LEADS = "SELECT user_id FROM members WHERE org = $1"
TWO = (
    "SELECT id, title FROM issues WHERE team_id IN"
    f" (SELECT team_id FROM projects WHERE lead IN ({LEADS}))"
)
THREE = TWO.replace("org = $1", "org IN (SELECT org FROM orgs WHERE plan = $1)")
ALLOWED = [1, 2, 3, 4]
NESTED_POLICIES = {
    **POLICIES,
    "public.members": {},
    "public.projects": {},
    "public.orgs": {},
}


def oracle(query: str) -> str:
    """`query` under the issues' policy of the claims (`team_id = ANY(team_ids)`)."""
    return query.replace("$1", "%s") + " AND team_id = ANY(%s)"


@pytest.mark.parametrize(("query", "param"), [(TWO, 1), (THREE, "pro")])
async def test_a_change_at_the_deepest_table_moves_outer_rows_live(
    database_url: str, redis_url: str, query: str, param: Any
) -> None:
    await execute(database_url, ISSUES_SCHEMA, NESTED_SCHEMA)
    settings = gateway_settings(database_url, redis_url, policies=NESTED_POLICIES)
    claims = {"sub": "ann", "team_ids": ALLOWED}
    sql, params = oracle(query), [param, ALLOWED]
    with capturing(database_url, redis_url):
        async with serve(settings) as url, refollowing(url, claims, query, [param]) as copy:
            await settles(copy, database_url, sql, params)
            assert set(copy.rows) == {'{"id": "1"}'}
            # bob joins org 1: the issues of his project's team (2) move in.
            await execute(database_url, "UPDATE members SET org = 1 WHERE id = 2")
            await settles(copy, database_url, sql, params)
            assert {row["title"] for row in copy.rows.values()} == {"one", "two", "three"}
            assert copy.refetches == 0  # moved in, not loaded again
            # A new member of org 1 who leads project 3, and an edit in the same commit.
            await execute(
                database_url,
                "INSERT INTO members VALUES (3, 'cat', 1)",
                "UPDATE issues SET title = 'four!' WHERE id = 4",
            )
            await settles(copy, database_url, sql, params)
            assert '{"id": "4"}' in copy.rows
            # ann leaves: team 1's issues move out; a project moves team (middle level).
            await execute(database_url, "DELETE FROM members WHERE id = 1")
            await execute(database_url, "UPDATE projects SET team_id = 4 WHERE id = 3")
            await settles(copy, database_url, sql, params)
            assert set(copy.rows) == {'{"id": "2"}', '{"id": "3"}', '{"id": "5"}'}
            # Every member leaves org 1 at once; then the deepest level changes alone.
            await execute(database_url, "UPDATE members SET org = 2")
            await settles(copy, database_url, sql, params)
            assert copy.rows == {}
            await execute(
                database_url,
                "UPDATE orgs SET plan = 'pro' WHERE id = 2",
                "UPDATE members SET org = 1 WHERE id = 2" if param == 1 else "SELECT 1",
            )
            await settles(copy, database_url, sql, params)
            assert '{"id": "2"}' in copy.rows
            assert copy.refetches == 0


POLICY_ROW = (
    "team_id IN (SELECT team_id FROM projects WHERE lead IN (SELECT user_id FROM members"
    " WHERE org IN (SELECT org FROM members WHERE user_id = auth.sub)))"
)
POLICY_ORACLE = "SELECT id, team_id, title FROM issues WHERE " + POLICY_ROW.replace(
    "auth.sub", "%s"
)


async def test_a_nested_policy_follows_its_deepest_table(database_url: str, redis_url: str) -> None:
    await execute(database_url, ISSUES_SCHEMA, NESTED_SCHEMA)
    policies = {
        **NESTED_POLICIES,
        "public.issues": {"columns": ["id", "team_id", "title", "status"], "row": POLICY_ROW},
    }
    settings = gateway_settings(database_url, redis_url, policies=policies)
    query = "SELECT id, team_id, title FROM issues WHERE title <> $1"
    with capturing(database_url, redis_url):
        async with (
            serve(settings) as url,
            refollowing(url, {"sub": "ann"}, query, ["x"]) as ann,
            refollowing(url, {"sub": "bob"}, query, ["x"]) as bob,
        ):
            await settles(ann, database_url, POLICY_ORACLE, ["ann"])
            await settles(bob, database_url, POLICY_ORACLE, ["bob"])
            # ann joins bob's org: both see each other's teams' issues.
            await execute(database_url, "INSERT INTO members VALUES (3, 'ann', 2)")
            await settles(ann, database_url, POLICY_ORACLE, ["ann"])
            await settles(bob, database_url, POLICY_ORACLE, ["bob"])
            assert {row["team_id"] for row in bob.rows.values()} == {1, 2}
            # The middle level: bob's project moves to team 3; then bob leaves org 2.
            await execute(database_url, "UPDATE projects SET team_id = 3 WHERE id = 2")
            await execute(database_url, "DELETE FROM members WHERE id = 2")
            await settles(ann, database_url, POLICY_ORACLE, ["ann"])
            await settles(bob, database_url, POLICY_ORACLE, ["bob"])
            assert bob.rows == {}
            assert (ann.refetches, bob.refetches) == (0, 0)


NESTED_4 = (
    "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE lead IN"
    " (SELECT user_id FROM members WHERE org IN (SELECT org FROM orgs WHERE id IN"
    " (SELECT id FROM orgs WHERE plan = $1))))"
)


async def test_deeper_than_the_setting_is_refused(database_url: str, redis_url: str) -> None:
    await execute(database_url, ISSUES_SCHEMA, NESTED_SCHEMA)
    settings = gateway_settings(database_url, redis_url, policies=NESTED_POLICIES)
    async with (
        serve(settings) as url,
        await SyncConnection.connect(
            url, authorization=token({"sub": "ann", "team_ids": [1]})
        ) as conn,
    ):
        with pytest.raises(OperationError) as refused:
            _ = [m async for m in conn.sync(NESTED_4, ["pro"])]
        assert "nested too deeply" in refused.value.errors[0]["message"]


EXISTS_NESTED = (
    "SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE"
    " lead = 'ann' OR EXISTS (SELECT 1 FROM members WHERE org = $1))"
)


async def test_an_exists_flipping_in_a_nested_select_moves_every_row(
    database_url: str, redis_url: str
) -> None:
    """An EXISTS in a nested select that flips (the set's emptiness changes) has no
    region: the nested set judges all its mirrored rows again, and the teams of every
    project move in, then out, without a refetch."""
    await execute(database_url, ISSUES_SCHEMA, NESTED_SCHEMA)
    settings = gateway_settings(database_url, redis_url, policies=NESTED_POLICIES)
    claims = {"sub": "ann", "team_ids": ALLOWED}
    sql, params = oracle(EXISTS_NESTED), [3, ALLOWED]
    with capturing(database_url, redis_url):
        async with serve(settings) as url, refollowing(url, claims, EXISTS_NESTED, [3]) as copy:
            await settles(copy, database_url, sql, params)
            assert set(copy.rows) == {'{"id": "1"}'}
            # Org 3 gets a member: every project's team is in the set now.
            await execute(database_url, "INSERT INTO members VALUES (3, 'dan', 3)")
            await settles(copy, database_url, sql, params)
            assert len(copy.rows) == 4  # the teams of every project
            await execute(database_url, "UPDATE members SET org = 1 WHERE id = 3")
            await settles(copy, database_url, sql, params)
            assert set(copy.rows) == {'{"id": "1"}'}
            assert copy.refetches == 0
