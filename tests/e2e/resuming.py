"""A graphql-ws client (node) that moves to another gateway when its own dies, and a writer.

`ResumingClient` drives `js/resuming_client.mjs` and keeps the copy its messages add
up to, checking on the way what "no duplicates, nothing missing" means for a copy
that is up to date: an INSERT names a row the copy does not hold, an UPDATE or
DELETE one it does, and every transaction's cursor is past the one before (so no
transaction arrives twice across a reconnection). `IssueWriter` commits random
inserts, updates, moves between teams and deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsift.middleware.feed.position import FeedPosition
from tests.middleware.gateway.pgrows import key_of

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")


class ResumingClient:
    """`node resuming_client.mjs`: its subscriptions, its copy and what broke the rules."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.rows: dict[str, dict[str, Any]] = {}
        self.cursor: FeedPosition | None = None
        self.up_to_date = False
        # (gateway URL, cursor) of each subscription, in order.
        self.subscriptions: list[tuple[str, str | None]] = []
        self.problems: list[str] = []
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, urls: list[str], authorization: str, query: str, params: list[Any]
    ) -> ResumingClient:
        if NODE is None or not (JS / "node_modules" / "graphql-ws").exists():
            pytest.fail("node and tests/e2e/js/node_modules are needed (.ci/setup runs npm ci)")
        options = {"urls": urls, "authorization": authorization, "query": query, "params": params}
        process = await asyncio.create_subprocess_exec(
            NODE, str(JS / "resuming_client.mjs"), json.dumps(options), stdout=subprocess.PIPE
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        if event["type"] == "subscribed":
            self.subscriptions.append((event["url"], event["cursor"]))
            if event["cursor"] is None:  # from scratch: a snapshot follows
                self.rows.clear()
                self.cursor, self.up_to_date = None, False
        elif event["type"] == "error":
            self.problems.append(f"GraphQL errors: {event['errors']}")
        elif event["type"] == "next":
            payload = event["payload"]
            if payload.get("errors"):
                self.problems.append(f"GraphQL errors: {payload['errors']}")
            else:
                self._apply(payload["data"]["sync"])

    def _apply(self, sync: dict[str, Any]) -> None:
        if sync["mustRefetch"]:
            self.problems.append(f"mustRefetch after cursor {self.cursor}")
            return
        for change in sync["changes"]:
            key = key_of(change["key"])
            if self.up_to_date and (change["op"] == "INSERT") == (key in self.rows):
                self.problems.append(f"{change['op']} of {key} (held: {key in self.rows})")
            if change["op"] == "DELETE":
                self.rows.pop(key, None)
            else:
                self.rows[key] = change["row"]
        if sync["cursor"] is not None:
            cursor = FeedPosition(sync["cursor"])
            if self.cursor is not None and (
                cursor < self.cursor or (sync["changes"] and cursor == self.cursor)
            ):
                self.problems.append(f"transaction at {cursor} after {self.cursor}")
            self.cursor = cursor
        self.up_to_date = self.up_to_date or sync["upToDate"]

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class IssueWriter:
    """Random transactions on `issues(id, team_id, title)` across `teams`."""

    def __init__(self, database_url: str, *, teams: int, seed: int, first_id: int) -> None:
        self.database_url = database_url
        self.teams = teams
        self.random = random.Random(seed)
        self.next_id = first_id
        self.ids: list[int] = []
        self.committed = 0

    async def run(self, transactions: int) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            for _ in range(transactions):
                async with conn.transaction():
                    for _ in range(self.random.randint(1, 3)):
                        await self._statement(conn)
                self.committed += 1

    async def _statement(self, conn: psycopg.AsyncConnection[Any]) -> None:
        kind = self.random.choice(("insert", "insert", "title", "move", "delete"))
        if kind == "insert" or not self.ids:
            self.next_id += 1
            self.ids.append(self.next_id)
            await conn.execute(
                "INSERT INTO issues (id, team_id, title) VALUES (%s, %s, %s)",
                [self.next_id, self._team(), f"issue {self.next_id}"],
            )
            return
        issue = self.random.choice(self.ids)
        if kind == "title":
            await conn.execute(
                "UPDATE issues SET title = title || '+' WHERE id = %s", [issue]
            )
        elif kind == "move":
            await conn.execute(
                "UPDATE issues SET team_id = %s WHERE id = %s", [self._team(), issue]
            )
        else:
            self.ids.remove(issue)
            await conn.execute("DELETE FROM issues WHERE id = %s", [issue])

    def _team(self) -> int:
        return self.random.randint(1, self.teams)
