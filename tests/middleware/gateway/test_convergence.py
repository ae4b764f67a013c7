"""Convergence: under a random write load, every client's copy ends equal to Postgres.

Several clients with different queries and tokens; one joins in the middle of
the load, one disconnects and resumes from its cursor, one shares a tiny send
queue with a second subscription and so keeps falling behind (mustRefetch,
then subscribes again). The load has inserts, moves between shapes, primary-key
changes, deletes, multi-row transactions and a TRUNCATE. No client may ever
receive a row outside its policy or a column the policy hides.
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
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected

TRANSACTIONS = 400
IDS = range(1, 120)
TEAMS = (1, 2, 3, 4)
STATUSES = ("open", "doing", "done")
POLICY_COLUMNS = {"id", "team_id", "title", "status", "points"}


@dataclass
class Client:
    """A subscriber that re-subscribes on mustRefetch and checks its policy on every row."""

    name: str
    team_ids: list[int]
    query: str
    params: list[Any]
    oracle: str  # the same query with the policy written out, %s params
    copy: LocalCopy = field(default_factory=LocalCopy)
    refetches: int = 0
    violations: list[str] = field(default_factory=list)
    conn: SyncConnection | None = None
    task: asyncio.Task[None] | None = None

    @property
    def authorization(self) -> str:
        return token({"sub": self.name, "team_ids": self.team_ids})

    async def start(self, url: str, subscriptions: int = 1) -> None:
        self.conn = await SyncConnection.connect(url, authorization=self.authorization)
        self.task = asyncio.create_task(self._run(subscriptions))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.conn is not None:
            await self.conn.close()

    async def _run(self, subscriptions: int) -> None:
        assert self.conn is not None
        # Extra subscriptions only share the connection's send queue.
        extra = [
            asyncio.create_task(self._drain(self.conn)) for _ in range(subscriptions - 1)
        ]
        try:
            while True:
                async for message in self.conn.sync(self.query, self.params, self.copy.cursor):
                    self._check(message)
                    self.copy.apply(message)
                    if message["mustRefetch"]:
                        break
                self.refetches += 1
                self.copy.reset()
        finally:
            for task in extra:
                task.cancel()

    async def _drain(self, conn: SyncConnection) -> None:
        while True:
            async for message in conn.sync(self.query, self.params):
                if message["mustRefetch"]:
                    break

    def _check(self, message: dict[str, Any]) -> None:
        for change in message["changes"]:
            row = change["row"]
            if row is None:
                continue
            if not set(row) <= POLICY_COLUMNS:
                self.violations.append(f"hidden column in {row}")
            if row.get("team_id") not in self.team_ids:
                self.violations.append(f"row outside policy: {row}")

    async def converged(self, database_url: str) -> bool:
        want = await expected(database_url, self.oracle, [*self.params, self.team_ids])
        return self.copy.up_to_date and self.copy.rows == want


def clients() -> list[Client]:
    return [
        Client(
            "team1", [1, 2],
            "SELECT id, team_id, title, status FROM issues WHERE team_id = $1", [1],
            "SELECT id, team_id, title, status FROM issues"
            " WHERE team_id = %s AND team_id = ANY(%s)",
        ),
        Client(
            "not-done", [2, 3],
            "SELECT id, team_id, title, points FROM issues WHERE status <> 'done'", [],
            "SELECT id, team_id, title, points FROM issues"
            " WHERE status <> 'done' AND team_id = ANY(%s)",
        ),
        Client(
            "late", [1, 2, 3],
            "SELECT id, team_id, status FROM issues WHERE team_id IN (1, 3) AND points > $1",
            [5],
            "SELECT id, team_id, status FROM issues"
            " WHERE team_id IN (1, 3) AND points > %s AND team_id = ANY(%s)",
        ),
        Client(
            "resumer", [3, 4],
            "SELECT id, team_id, title FROM issues WHERE team_id >= $1", [3],
            "SELECT id, team_id, title FROM issues WHERE team_id >= %s AND team_id = ANY(%s)",
        ),
        Client(
            "behind", [2],
            "SELECT id, team_id, title, status, points FROM issues WHERE team_id = $1", [2],
            "SELECT id, team_id, title, status, points FROM issues"
            " WHERE team_id = %s AND team_id = ANY(%s)",
        ),
    ]


def statements(rng: random.Random, live: set[int]) -> list[str]:
    """One random transaction of 1-4 writes; `live` tracks the ids that exist."""
    out: list[str] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("insert", "insert", "move", "edit", "edit", "rekey", "delete"))
        if kind == "insert" or not live:
            free = [i for i in IDS if i not in live]
            if not free:
                continue
            new = rng.choice(free)
            live.add(new)
            out.append(
                "INSERT INTO issues (id, team_id, title, status, points, secret) VALUES"
                f" ({new}, {rng.choice(TEAMS)}, 't{rng.randint(0, 999)}',"
                f" '{rng.choice(STATUSES)}', {rng.randint(0, 10)}, 's')"
            )
            continue
        target = rng.choice(sorted(live))
        if kind == "move":
            out.append(f"UPDATE issues SET team_id = {rng.choice(TEAMS)} WHERE id = {target}")
        elif kind == "edit":
            out.append(
                f"UPDATE issues SET title = 'e{rng.randint(0, 999)}',"
                f" status = '{rng.choice(STATUSES)}', points = {rng.randint(0, 10)}"
                f" WHERE id = {target}"
            )
        elif kind == "rekey":
            free = [i for i in IDS if i not in live]
            if free:
                new = rng.choice(free)
                live.discard(target)
                live.add(new)
                out.append(f"UPDATE issues SET id = {new} WHERE id = {target}")
        else:
            live.discard(target)
            out.append(f"DELETE FROM issues WHERE id = {target}")
    return out


async def test_clients_converge_under_a_random_load(database_url: str, redis_url: str) -> None:
    await execute(database_url, ISSUES_SCHEMA)
    rng = random.Random(4)
    live: set[int] = set()
    for _ in range(20):
        await execute(database_url, *statements(rng, live))
    team1, not_done, late, resumer, behind = everyone = clients()
    with capturing(database_url, redis_url):
        async with serve(gateway_settings(database_url, redis_url)) as url, serve(
            gateway_settings(database_url, redis_url, gateway_send_queue=1)
        ) as tiny_queue_url:
            for client in (team1, not_done, resumer):
                await client.start(url)
            await behind.start(tiny_queue_url, subscriptions=2)
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                for n in range(TRANSACTIONS):
                    if n == TRANSACTIONS // 4:
                        await late.start(url)
                    if n == TRANSACTIONS // 3:
                        await resumer.stop()
                    if n == TRANSACTIONS // 2:
                        await resumer.start(url)  # from its cursor, with its rows
                    if n == 2 * TRANSACTIONS // 3:
                        await conn.execute("TRUNCATE issues")
                        await conn.commit()
                        live.clear()
                        continue
                    for statement in statements(rng, live):
                        await conn.execute(statement)
                    await conn.commit()
                    if n % 8 == 0:
                        await asyncio.sleep(0.01)
            for client in everyone:
                await eventually(partial(client.converged, database_url), client.name)
            for client in everyone:
                await client.stop()
    assert [c.violations for c in everyone] == [[]] * len(everyone)
    # The TRUNCATE made every client that was subscribed then refetch.
    assert all(c.refetches >= 1 for c in everyone)
    assert behind.refetches > 1
