"""urql with the official graphql-ws client against `pgsift serve`: a typed subscription.

`pgsift serve` runs with the issue tracker's config (its policies decide the
typed schema) after `pgsift capture`; GraphQL Code Generator reads the LIVE
schema by introspection over `POST /graphql`, `tsc` type-checks the client
(`tests/e2e/js/typed/live.ts`) against it and compiles it with its runner
(`run_live.ts`), and node runs it: typed rows arrive and the client's copy
converges with what Postgres returns for the same filter and policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from examples.issue_tracker.auth import DEMO_SECRET
from tests.e2e.gateways import pgsift_serve
from tests.e2e.node import JS, NODE, TYPED, run_tool
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import eventually, token
from tests.middleware.gateway.pgrows import execute, expected
from tests.middleware.graphql.issue_tracker import CONFIG, issue_tracker_catalog

TEAM_1 = token({"sub": "1", "user_id": 1}, secret=DEMO_SECRET)
# What live.ts's `variables` ask for, as SQL; the policy (user 1 is a member of team 1
# in team_members) adds team_id = 1 too.
ORACLE = (
    "SELECT id, title, status, estimate FROM issues WHERE team_id = 1"
    " AND (status IN ('todo', 'in_progress') OR priority > 2) AND NOT title ILIKE '%%wontfix%%'"
)
SEED = (
    "INSERT INTO teams (id, key, name) VALUES (1, 'ENG', 'Engineering'), (2, 'OPS', 'Ops')",
    "INSERT INTO users (id, email, name) VALUES (1, 'ada@example.com', 'Ada')",
    "INSERT INTO team_members (team_id, user_id) VALUES (1, 1)",
    "INSERT INTO issues (id, team_id, number, title, status, priority, estimate) VALUES"
    " (1, 1, 1, 'open one', 'todo', 0, 2.5), (2, 1, 2, 'urgent', 'backlog', 3, NULL),"
    " (3, 1, 3, 'wontfix this', 'todo', 0, NULL), (4, 2, 1, 'other team', 'todo', 0, NULL),"
    " (5, 1, 4, 'done already', 'done', 0, NULL)",
)


class LiveClient:
    """`node out/run_live.js`: the urql client's copy after each message."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.last: dict[str, Any] | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.last = json.loads(line)

    def rows(self) -> dict[str, dict[str, Any]]:
        return {} if self.last is None else {row["id"]: row for row in self.last["rows"]}

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        await self.process.wait()
        self._task.cancel()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    if NODE is None or not (JS / "node_modules" / "@graphql-codegen" / "cli").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (.ci/setup runs npm ci)")
    work = tmp_path / "client"
    work.mkdir()
    for name in ("codegen.yml", "live.ts", "run_live.ts", "tsconfig.json", "tsconfig.emit.json"):
        shutil.copy(TYPED / name, work / name)
    (work / "node_modules").symlink_to(JS / "node_modules", target_is_directory=True)
    (work / "package.json").write_text('{"type": "module"}', encoding="utf-8")
    return work


async def _oracle(database_url: str) -> dict[str, dict[str, Any]]:
    rows = await expected(database_url, ORACLE, [])
    return {row["id"]: row for row in rows.values()}


async def test_urql_follows_a_typed_subscription_of_pgsift_serve(
    workdir: Path, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    issue_tracker_catalog(database_url)
    await execute(database_url, *SEED)
    with (
        capturing(database_url, redis_url, config=CONFIG),
        pgsift_serve(database_url, redis_url, tmp_path, config=CONFIG) as ws_url,
    ):
        http_url = ws_url.replace("ws://", "http://")
        codegen = workdir / "codegen.yml"
        text = codegen.read_text(encoding="utf-8")
        codegen.write_text(text.replace("schema: schema.graphql", f"schema: {http_url}"),
                           encoding="utf-8")  # fmt: skip
        generated = await asyncio.to_thread(
            run_tool, "graphql-codegen", "--config", "codegen.yml", cwd=workdir
        )
        assert generated.returncode == 0, generated.stdout + generated.stderr
        assert "export type IssuesLiveSubscription = " in (workdir / "generated.ts").read_text()
        checked = await asyncio.to_thread(run_tool, "tsc", "-p", "tsconfig.json", cwd=workdir)
        assert checked.returncode == 0, checked.stdout
        emitted = await asyncio.to_thread(run_tool, "tsc", "-p", "tsconfig.emit.json", cwd=workdir)
        assert emitted.returncode == 0, emitted.stdout
        assert NODE is not None
        process = await asyncio.create_subprocess_exec(
            NODE, str(workdir / "out" / "run_live.js"), http_url, TEAM_1,
            stdout=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        client = LiveClient(process)
        try:
            await eventually(lambda: bool(client.last and client.last["upToDate"]), "upToDate")
            assert client.rows() == await _oracle(database_url)
            assert client.rows()["1"] == {"id": "1", "title": "open one", "status": "todo",
                                          "estimate": "2.5"}  # fmt: skip
            await execute(
                database_url,
                "INSERT INTO issues (id, team_id, number, title, status, priority)"
                " VALUES (6, 1, 5, 'new', 'in_progress', 1)",
            )
            await execute(database_url, "UPDATE issues SET status = 'done' WHERE id = 1")
            await execute(database_url, "UPDATE issues SET estimate = 8.0 WHERE id = 2")
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("UPDATE issues SET team_id = 1, number = 9 WHERE id = 4")

            async def converged() -> bool:
                return client.rows() == await _oracle(database_url)

            await eventually(converged, "the urql client's copy equals Postgres")
            assert sorted(client.rows()) == ["2", "4", "6"]
        finally:
            await client.stop()
