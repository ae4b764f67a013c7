"""Relational convergence: under random membership and issue churn, every copy equals SELECT.

Memberships are inserted, deleted, and moved between users and teams; issues
are inserted, edited, moved between teams and deleted, several writes to a
transaction. Clients subscribe with `IN (SELECT ...)` in the query (with and
without another condition, and `NOT IN`), or read a table whose policy holds
the subquery; one joins mid-load, one disconnects and resumes from its cursor
(a resume over changed memberships ends in mustRefetch, and the client
bootstraps again). At the end every copy equals what Postgres returns for its
query under its policy, and no client ever got a column its policy hides or a
row of a team its token does not allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg

from pgsift.middleware.gateway.client import LocalCopy, SyncConnection
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    POLICIES,
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected

TRANSACTIONS = 160
TEAMS = (1, 2, 3, 4, 5)
USERS = ("u1", "u2", "u3")
MEMBERSHIPS = "CREATE TABLE memberships (id int PRIMARY KEY, team_id int NOT NULL, user_id text);"
TEAMS_OF = "SELECT team_id FROM memberships WHERE user_id = $1"
ISSUE_COLUMNS = {"id", "team_id", "title", "status", "points"}
MEMBER_POLICIES = {
    "public.issues": {
        "columns": sorted(ISSUE_COLUMNS),
        "row": "team_id IN (SELECT team_id FROM memberships WHERE user_id = auth.sub)",
    },
    "public.memberships": {"columns": ["id", "team_id", "user_id"], "row": "user_id = auth.sub"},
}


@dataclass
class Client:
    """A subscriber that bootstraps again on mustRefetch and checks every row it gets."""

    name: str
    team_ids: list[int] | None  # the token's claim (None: the policy reads memberships)
    query: str
    params: list[Any]
    oracle: str  # the query with its policy written out, %s params
    oracle_params: list[Any]
    copy: LocalCopy = field(default_factory=LocalCopy)
    refetches: int = 0
    violations: list[str] = field(default_factory=list)
    conn: SyncConnection | None = None
    task: asyncio.Task[None] | None = None

    async def start(self, url: str) -> None:
        claims: dict[str, Any] = {"sub": self.name}
        if self.team_ids is not None:
            claims["team_ids"] = self.team_ids
        self.conn = await SyncConnection.connect(url, authorization=token(claims))
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.conn is not None:
            await self.conn.close()

    async def _run(self) -> None:
        assert self.conn is not None
        while True:
            async for message in self.conn.sync(self.query, self.params, self.copy.cursor):
                self._check(message)
                self.copy.apply(message)
                if message["mustRefetch"]:
                    break
            self.refetches += 1
            self.copy.reset()

    def _check(self, message: dict[str, Any]) -> None:
        for change in message["changes"]:
            row = change["row"]
            if row is None:
                continue
            if not set(row) <= ISSUE_COLUMNS:
                self.violations.append(f"hidden column in {row}")
            if self.team_ids is not None and row.get("team_id", 1) not in self.team_ids:
                self.violations.append(f"row outside the token's teams: {row}")

    async def converged(self, database_url: str) -> bool:
        want = await expected(database_url, self.oracle, self.oracle_params)
        return self.copy.up_to_date and self.copy.rows == want


def clients() -> tuple[list[Client], list[Client]]:
    """Clients of the claims gateway, and of the gateway whose policy reads memberships."""
    allowed = [1, 2, 3, 4]
    by_claims = [
        Client(
            "u1", allowed, f"SELECT id, team_id, title FROM issues WHERE team_id IN ({TEAMS_OF})",
            ["u1"], f"SELECT id, team_id, title FROM issues WHERE team_id IN ({TEAMS_OF})"
            " AND team_id = ANY(%s)", ["u1", allowed],
        ),
        Client(
            "u2", allowed, "SELECT id, team_id, status FROM issues WHERE status <> 'done' AND"
            f" team_id IN ({TEAMS_OF})", ["u2"],
            "SELECT id, team_id, status FROM issues WHERE status <> 'done' AND"
            f" team_id IN ({TEAMS_OF}) AND team_id = ANY(%s)", ["u2", allowed],
        ),
        Client(
            "u3", allowed, f"SELECT id, team_id FROM issues WHERE team_id NOT IN ({TEAMS_OF})",
            ["u3"], f"SELECT id, team_id FROM issues WHERE team_id NOT IN ({TEAMS_OF})"
            " AND team_id = ANY(%s)", ["u3", allowed],
        ),
        Client(
            "late", allowed, f"SELECT id, title, points FROM issues WHERE team_id IN ({TEAMS_OF})"
            " OR points > 8", ["u2"],
            "SELECT id, title, points FROM issues WHERE"
            f" (team_id IN ({TEAMS_OF}) OR points > 8) AND team_id = ANY(%s)", ["u2", allowed],
        ),
    ]
    policy = "team_id IN (SELECT team_id FROM memberships WHERE user_id = %s)"
    by_policy = [
        Client(
            user, None, "SELECT id, team_id, title, status FROM issues", [],
            f"SELECT id, team_id, title, status FROM issues WHERE {policy}", [user],
        )
        for user in ("u1", "u3")
    ]
    return by_claims, by_policy


def statements(rng: random.Random, issues: set[int], members: set[int]) -> list[str]:
    """One random transaction of 1-4 writes; the sets track the ids that exist."""
    out: list[str] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("join", "leave", "switch", "issue", "move", "edit", "delete"))
        if kind == "join" or (kind in ("leave", "switch") and not members):
            new = max(members, default=0) + 1
            members.add(new)
            out.append(f"INSERT INTO memberships VALUES ({new}, {rng.choice(TEAMS)},"
                       f" '{rng.choice(USERS)}')")
        elif kind == "leave":
            gone = rng.choice(sorted(members))
            members.discard(gone)
            out.append(f"DELETE FROM memberships WHERE id = {gone}")
        elif kind == "switch":
            column, value = rng.choice(
                (("team_id", str(rng.choice(TEAMS))), ("user_id", f"'{rng.choice(USERS)}'"))
            )
            out.append(f"UPDATE memberships SET {column} = {value}"
                       f" WHERE id = {rng.choice(sorted(members))}")
        elif kind == "issue" or not issues:
            new = max(issues, default=0) + 1
            issues.add(new)
            out.append("INSERT INTO issues (id, team_id, title, status, points, secret) VALUES"
                       f" ({new}, {rng.choice(TEAMS)}, 't{new}', 'open', {rng.randint(0, 10)},"
                       " 's')")
        elif kind == "move":
            out.append(f"UPDATE issues SET team_id = {rng.choice(TEAMS)}"
                       f" WHERE id = {rng.choice(sorted(issues))}")
        elif kind == "edit":
            status = rng.choice(("open", "doing", "done"))
            out.append(f"UPDATE issues SET title = 'e{rng.randint(0, 999)}', status = '{status}',"
                       f" points = {rng.randint(0, 10)} WHERE id = {rng.choice(sorted(issues))}")
        else:
            gone = rng.choice(sorted(issues))
            issues.discard(gone)
            out.append(f"DELETE FROM issues WHERE id = {gone}")
    return out


async def test_relational_clients_converge_under_membership_churn(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, ISSUES_SCHEMA, MEMBERSHIPS)
    rng = random.Random(12)
    issues: set[int] = set()
    members: set[int] = set()
    for _ in range(15):
        await execute(database_url, *statements(rng, issues, members))
    by_claims, by_policy = clients()
    u1, u2, u3, late = by_claims
    policies = {**POLICIES, "public.memberships": {}}
    with capturing(database_url, redis_url):
        async with (
            serve(gateway_settings(database_url, redis_url, policies=policies)) as url,
            serve(gateway_settings(database_url, redis_url, policies=MEMBER_POLICIES)) as other,
        ):
            for client in (u1, u2, u3):
                await client.start(url)
            for client in by_policy:
                await client.start(other)
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                for n in range(TRANSACTIONS):
                    if n == TRANSACTIONS // 4:
                        await late.start(url)
                    if n == TRANSACTIONS // 3:
                        await u2.stop()
                    if n == TRANSACTIONS // 2:
                        await u2.start(url)  # from its cursor, with its rows
                    for statement in statements(rng, issues, members):
                        await conn.execute(statement)
                    await conn.commit()
                    if n % 8 == 0:
                        await asyncio.sleep(0.01)
            everyone = [*by_claims, *by_policy]
            for client in everyone:
                await eventually(partial(client.converged, database_url), client.name)
            for client in everyone:
                await client.stop()
    assert [c.violations for c in everyone] == [[]] * len(everyone)
    # Rows moved live: only the client that resumed over changed memberships refetched.
    assert [c.refetches for c in everyone if c is not u2] == [0] * (len(everyone) - 1)
