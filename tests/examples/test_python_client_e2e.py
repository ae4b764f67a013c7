"""The Python client against the real thing: capture + the gateway + the example app.

The client runs as its command line in a subprocess, is killed (-9) in the
middle of a write load, and started again on the same SQLite file: it must
resume from its stored cursors with nothing repeated, and once the writer stops
its copy must equal Postgres's SELECT row for row, value for value.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from examples.issue_tracker import Writer, apply_schema, demo_users, issue_token, seed
from examples.python_client import Replica, SyncClient
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.retention import FeedRetention
from tests.examples.stack import (
    EXAMPLE_CONFIG,
    ROOT,
    eventually,
    expected_rows,
    gateway,
    key_text,
)
from tests.middleware.capture.processes import capturing

QUERIES = {
    "open_issues": (
        "SELECT id, team_id, number, title, status, priority, assignee_id, estimate, tags,"
        " due, updated_at FROM issues WHERE team_id = $1 AND status NOT IN ('done', 'canceled')"
    ),
    "comments": "SELECT id, issue_id, author_id, body, edited_at FROM comments WHERE team_id = $1",
}


class ClientProcess:
    """`python -m examples.python_client` in a subprocess; its stdout lines as parsed JSON."""

    def __init__(self, base_url: str, token: str, replica: Path, team: int | None) -> None:
        args = [sys.executable, "-m", "examples.python_client", "--url", base_url,
                "--token", token, "--replica", str(replica)]
        if team is not None:
            for name, sql in QUERIES.items():
                args += ["--query", f"{name}={sql}", "--params", f"{name}=[{team}]"]
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def up_to_date(self, name: str) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the client exited with {self.process.returncode}")
        return any(line["query"] == name and line["upToDate"] for line in self.lines)

    def cursors(self, name: str, *, with_changes: bool = False) -> list[tuple[int, int]]:
        return [
            _position(line["cursor"])
            for line in self.lines
            if line["query"] == name and line["cursor"] is not None
            and (line["changes"] or not with_changes)
        ]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self._finish()

    def stop(self) -> None:
        self.process.terminate()
        self._finish()

    def _finish(self) -> None:
        self.process.wait(30)
        self._reader.join()
        assert self.process.stdout is not None
        self.process.stdout.close()


def _position(cursor: str) -> tuple[int, int]:
    lsn, _, chunk = cursor.partition("-")
    return int(lsn), int(chunk or 0)


@pytest.fixture
def stack(database_url: str, redis_url: str) -> Iterator[tuple[str, str, int]]:
    """Seeded app, capture, gateway; yields (base URL, a demo user's token, one of its teams)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_schema(conn)
        seed(conn, issues=1_500, seed=5)
        user = demo_users(conn, limit=1)[0]
    with capturing(database_url, redis_url, config=EXAMPLE_CONFIG), gateway(
        database_url, redis_url
    ) as base_url:
        yield base_url, issue_token(user), user.team_ids[0]


def replica_matches_postgres(path: Path, database_url: str, team: int) -> bool:
    replica = Replica(path)
    try:
        return all(
            {_key(row): row for row in replica.rows(name)}
            == expected_rows(database_url, sql, [team])
            for name, sql in QUERIES.items()
        )
    finally:
        replica.close()


def _key(row: dict[str, Any]) -> str:
    return key_text({"id": row["id"]})


def test_restart_mid_stream_resumes_without_gaps_or_duplicates(
    stack: tuple[str, str, int], database_url: str, tmp_path: Path
) -> None:
    base_url, token, team = stack
    path = tmp_path / "replica.sqlite"
    writer = Writer(database_url, 17)
    load = threading.Thread(target=writer.run, kwargs={"rate": 150.0, "duration": 60.0,
                                                       "steps": 900})
    load.start()
    try:
        first = ClientProcess(base_url, token, path, team)
        eventually(lambda: all(first.up_to_date(name) for name in QUERIES), "first bootstrap")
        # Mid-stream: after some live transactions reached it.
        eventually(lambda: len(first.cursors("open_issues")) >= 10, "live messages")
        first.kill()
        replica = Replica(path)
        stored = {name: replica.state(name).cursor for name in QUERIES}
        replica.close()
        assert all(stored.values())

        second = ClientProcess(base_url, token, path, None)  # queries come from the replica
        eventually(lambda: all(second.up_to_date(name) for name in QUERIES), "resumed")
        load.join()
        eventually(lambda: replica_matches_postgres(path, database_url, team), "converged")
        second.stop()
    finally:
        load.join()
        writer.close()
    assert replica_matches_postgres(path, database_url, team)
    for name in QUERIES:
        # No transaction at or before the stored cursor came again, none came twice.
        resumed = second.cursors(name, with_changes=True)
        assert all(position > _position(stored[name] or "") for position in resumed), name
        assert resumed == sorted(set(resumed)), name
        assert not any(line["mustRefetch"] for line in second.lines if line["query"] == name)


def test_fetch_rows_by_key_through_the_batch_loader(
    stack: tuple[str, str, int], database_url: str, tmp_path: Path
) -> None:
    base_url, token, team = stack
    with psycopg.connect(database_url) as conn:
        done = conn.execute(
            "SELECT id FROM issues WHERE team_id = %s AND status = 'done' ORDER BY id LIMIT 2",
            [team],
        ).fetchall()
        foreign = conn.execute(
            "SELECT min(id) FROM issues WHERE team_id <> %s", [team]
        ).fetchone()
    assert foreign is not None
    wanted = [row[0] for row in done] + [foreign[0], 10**9]
    columns = ["id", "team_id", "title", "status", "estimate", "updated_at"]

    async def fetch() -> list[dict[str, Any] | None]:
        client = SyncClient(base_url, Replica(tmp_path / "r.sqlite"), token=token)
        try:
            return await client.fetch_rows("issues", wanted, columns)
        finally:
            await client.aclose()
            client.replica.close()

    rows = asyncio.run(fetch())
    sql = f"SELECT {', '.join(columns)} FROM issues WHERE id = ANY($1) AND team_id = {team}"
    expected = expected_rows(database_url, sql, [wanted])
    # Rows outside the synced set come by key; another team's and a missing one are null.
    assert rows[:2] == [expected[_key({"id": str(id)})] for id in wanted[:2]]  # int8 wire
    assert rows[2:] == [None, None]


def test_must_refetch_drops_the_copy_and_bootstraps_again(
    stack: tuple[str, str, int], database_url: str, redis_url: str, tmp_path: Path
) -> None:
    base_url, token, team = stack
    path = tmp_path / "replica.sqlite"
    first = ClientProcess(base_url, token, path, team)
    eventually(lambda: all(first.up_to_date(name) for name in QUERIES), "bootstrap")
    first.stop()
    # While the client is away: writes, then retention drops the feed past its cursor.
    with Writer(database_url, 3) as writer:
        writer.run(rate=None, steps=200)
    client = redis.Redis.from_url(redis_url)
    stream = keys.feed_stream(keys.database_of(database_url))
    eventually(lambda: client.xlen(stream) > 0, "the writes reached the feed")
    [(last, _)] = client.xrevrange(stream, count=1)
    FeedRetention(client, stream).trim(last.decode())  # as `pgsift worker`'s trim_feed does
    client.close()

    second = ClientProcess(base_url, token, path, None)
    eventually(lambda: all(second.up_to_date(name) for name in QUERIES), "bootstrapped again")
    eventually(lambda: replica_matches_postgres(path, database_url, team), "converged")
    second.stop()
    assert {line["query"] for line in second.lines if line["mustRefetch"]} == set(QUERIES)


README = ROOT / "examples" / "python_client" / "README.md"
README_URL = "http://127.0.0.1:8000"


def readme_commands(block: str) -> list[str]:
    """The commands of a ```sh block: continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_commands_work(
    stack: tuple[str, str, int], database_url: str, tmp_path: Path
) -> None:
    """The README's token command and client commands, as written, against the stack."""
    base_url, _, _ = stack
    token_block, client_block = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)[:2]
    # Each client command stops once up to date instead of following forever.
    follow = [f"{command.replace(README_URL, base_url)} --until-up-to-date"
              for command in readme_commands(client_block)]
    script = "\n".join(["set -eu", *readme_commands(token_block), *follow])
    run = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT),
             # `python` is the venv's, as after `source .venv/bin/activate`.
             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["upToDate"] for line in lines if line["upToDate"]] == [True, True]
    replica = Replica(tmp_path / "issues.sqlite")
    try:
        rows = {_key(row): row for row in replica.rows("open")}
    finally:
        replica.close()
    sql = "SELECT id, title, status FROM issues WHERE team_id = $1 AND status <> 'done'"
    assert rows and rows == expected_rows(database_url, sql, [1])
