"""Nested relational convergence: under churn on every level, every copy equals SELECT.

Orgs change plan, members join, leave and change org, projects change team
and lead, issues are inserted, edited, moved and deleted, several writes to a
transaction. Clients subscribe with two- and three-level nested `IN (SELECT
...)` in the query (alone, under AND, under OR), or read issues under a
policy nested three deep; one joins mid-load. A change of a set other sets
read makes those judge their mirrored rows again, and rows move in and out
(docs/relational.md, "Nested sets"); a client told to refetch (a set loaded
mid-load, in its pending window) starts over as clients do. At the end every copy equals
what Postgres returns for its query under its policy, every inner set of both
gateways, at every level, equals its select, and no client got a hidden
column or a row of a team its token does not allow.
"""

from __future__ import annotations

import asyncio
import random
from functools import partial

import psycopg
from starlette.applications import Starlette

from pgsift.middleware.gateway.app import create_app
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import ISSUES_SCHEMA, eventually, gateway_settings, serving
from tests.middleware.gateway.pgrows import execute
from tests.middleware.gateway.test_relational_convergence import Client
from tests.middleware.gateway.test_relational_nested import (
    NESTED_POLICIES,
    POLICY_ORACLE,
    POLICY_ROW,
)

TRANSACTIONS = 120
TEAMS = (1, 2, 3, 4, 5)
USERS = ("ann", "bob", "cat", "dan")
ORGS = (1, 2, 3)
PLANS = ("pro", "free")
SCHEMA = """
CREATE TABLE members (id int PRIMARY KEY, user_id text NOT NULL, org int NOT NULL);
CREATE TABLE projects (id int PRIMARY KEY, team_id int NOT NULL, lead text NOT NULL);
CREATE TABLE orgs (id int PRIMARY KEY, org int NOT NULL, plan text NOT NULL);
INSERT INTO orgs VALUES (1, 1, 'pro'), (2, 2, 'free'), (3, 3, 'pro');
"""
ALLOWED = [1, 2, 3, 4]
LEADS = "SELECT user_id FROM members WHERE org = $1"
ON_PLAN = "SELECT user_id FROM members WHERE org IN (SELECT org FROM orgs WHERE plan = $1)"
TEAMS_LED = "SELECT team_id FROM projects WHERE lead IN ({})"


async def sets_exact(app: Starlette, database_url: str) -> bool:
    """Whether every materialized inner set of the gateway holds exactly the rows of its
    select in Postgres (by primary key)."""
    registry = app.state.service.sets
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for state in list(registry._states.values()):
            sql, params = state.inner.to_sql()
            cursor = await conn.execute(sql, params)
            width = len(state.inner.primary_key)
            truth = {tuple(row[:width]) for row in await cursor.fetchall()}
            if set(state.row_keys()) != truth:
                return False
    return bool(registry._states)


def client(name: str, columns: str, where: str, param: object) -> Client:
    """A client of the claims gateway: `where` holds `$1`."""
    query = f"SELECT {columns} FROM issues WHERE {where}"
    oracle = f"SELECT {columns} FROM issues WHERE ({where.replace('$1', '%s')})"
    return Client(
        name, ALLOWED, query, [param], oracle + " AND team_id = ANY(%s)", [param, ALLOWED]
    )


def clients() -> tuple[list[Client], list[Client]]:
    """Clients of the claims gateway, and of the gateway whose policy nests three deep."""
    two, three = TEAMS_LED.format(LEADS), TEAMS_LED.format(ON_PLAN)
    by_claims = [
        client("two", "id, team_id, title", f"team_id IN ({two})", 1),
        client("three", "id, team_id, title", f"team_id IN ({three})", "pro"),
        client("and", "id, team_id, status", f"status <> 'done' AND team_id IN ({three})", "free"),
        client("late", "id, title, points", f"team_id IN ({two}) OR points > 8", 2),
    ]
    by_policy = [
        Client(user, None, "SELECT id, team_id, title FROM issues", [], POLICY_ORACLE, [user])
        for user in ("ann", "cat")
    ]
    return by_claims, by_policy


def statements(rng: random.Random, ids: dict[str, set[int]]) -> list[str]:
    """One random transaction of 1-4 writes on every level; `ids` tracks the rows."""
    out: list[str] = []
    for _ in range(rng.randint(1, 4)):
        table = rng.choice(("orgs", "members", "members", "projects", "projects", "issues"))
        existing = sorted(ids[table])
        kind = rng.choice(("insert", "update", "update", "delete"))
        if table == "orgs" or (kind != "insert" and existing):
            row = rng.choice(existing)
        else:
            row = max(ids[table], default=0) + 1
            kind = "insert"
        if table == "orgs":
            out.append(f"UPDATE orgs SET plan = '{rng.choice(PLANS)}' WHERE id = {row}")
            continue
        if kind == "delete":
            ids[table].discard(row)
            out.append(f"DELETE FROM {table} WHERE id = {row}")
            continue
        user, team, org = rng.choice(USERS), rng.choice(TEAMS), rng.choice(ORGS)
        if kind == "insert":
            ids[table].add(row)
            values = {
                "members": f"({row}, '{user}', {org})",
                "projects": f"({row}, {team}, '{user}')",
            }.get(table)
            if values is None:
                out.append(
                    "INSERT INTO issues (id, team_id, title, status, points, secret) VALUES"
                    f" ({row}, {team}, 't{row}', 'open', {rng.randint(0, 10)}, 's')"
                )
            else:
                out.append(f"INSERT INTO {table} VALUES {values}")
            continue
        change = {
            "members": rng.choice((f"org = {org}", f"user_id = '{user}'")),
            "projects": rng.choice((f"team_id = {team}", f"lead = '{user}'")),
            "issues": rng.choice(
                (
                    f"team_id = {team}",
                    f"title = 'e{rng.randint(0, 999)}', points = {rng.randint(0, 10)},"
                    f" status = '{rng.choice(('open', 'doing', 'done'))}'",
                )
            ),
        }[table]
        out.append(f"UPDATE {table} SET {change} WHERE id = {row}")
    return out


async def test_nested_clients_converge_under_churn_on_every_level(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, SCHEMA)
    rng = random.Random(12)
    ids: dict[str, set[int]] = {"orgs": {1, 2, 3}, "members": set(), "projects": set(),
                                "issues": set()}  # fmt: skip
    for _ in range(20):
        await execute(database_url, *statements(rng, ids))
    by_claims, by_policy = clients()
    late = by_claims[-1]
    policies = {
        **NESTED_POLICIES,
        "public.issues": {"columns": ["id", "team_id", "title", "status"], "row": POLICY_ROW},
    }
    settings = [
        gateway_settings(database_url, redis_url, policies=p) for p in (NESTED_POLICIES, policies)
    ]
    apps = [create_app(each) for each in settings]
    with capturing(database_url, redis_url):
        async with (
            serving(apps[0], settings[0]) as url,
            serving(apps[1], settings[1]) as other,
        ):
            for each in by_claims[:-1]:
                await each.start(url)
            for each in by_policy:
                await each.start(other)
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                for n in range(TRANSACTIONS):
                    if n == TRANSACTIONS // 3:
                        await late.start(url)
                    for statement in statements(rng, ids):
                        await conn.execute(statement)
                    await conn.commit()
                    if n % 8 == 0:
                        await asyncio.sleep(0.01)
            everyone = [*by_claims, *by_policy]
            for each in everyone:
                await eventually(partial(each.converged, database_url), each.name)
            for app in apps:
                await eventually(partial(sets_exact, app, database_url), "the sets exact")
            for each in everyone:
                await each.stop()
    assert [c.violations for c in everyone] == [[]] * len(everyone)
    # The path under test was taken: membership changes deep in the chains moved nested
    # sets, judged in memory.
    assert sum(app.state.service.sets.rejudged for app in apps) > 0
