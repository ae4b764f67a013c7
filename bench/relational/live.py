"""Relational moves live (parts (b) and (c) of `bench/relational/run.py`).

A throwaway Postgres (with `pg_stat_statements`) and Redis, `pgsift capture`
and `pgsift serve` as subprocesses. Issues over `teams` teams (20 each), plus
`rounds` big teams of `moved` issues each; `subscriptions` users, each a member
of three small teams, each subscribed over websockets to
`SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM memberships
WHERE user_id = $1)`.

The workload, per round: one user joins a big team (its `moved` issues move
into that user's subscription), `edits` issues of the subscribers' teams are
edited one transaction each (outer changes), and the user leaves the big team
again (the issues move out).

* pgsift: each latency is commit -> the change is in the websocket client's
  copy (every moved row; the edited title at one subscriber of the team).
* re-query (the baseline, same run, same database, same changes, after pgsift
  is stopped): a live-query server process (`requery.py`) that learns of a
  change by NOTIFY, re-runs the query of every subscription reading the changed
  table (Hasura-style, in batches of `--requery-batch` subscriptions per
  statement), diffs with the previous result and sends the diff as JSON frames
  to its websocket clients; the same clients' measure: commit -> the change in
  the client's copy.
* The workload is closed-loop: one change at a time, the next after the last
  one arrived (no steady rate of changes, no queueing between them; for the
  re-query server, after its pass over every subscription ended).
* Postgres statements: every statement the gateway (its own role) or the
  re-query server (its own role) ran during the workload, by
  `pg_stat_statements` (transaction control, cursors and pool checks
  included).
* plain tx, for scale: a transaction inserting (deleting) `moved` rows in a
  team the user is in: pgsift's delivery path without a move.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import psycopg
import requery

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.gateway.client import LocalCopy, SyncConnection, key_of

PGSIFT = Path(sys.executable).with_name("pgsift")
TEAMS_OF = "SELECT team_id FROM memberships WHERE user_id = $1"
QUERY = f"SELECT id, title FROM issues WHERE team_id IN ({TEAMS_OF})"
SMALL = 20  # issues per small team
WAIT_S = 60.0
STARTING = 500  # subscriptions started at once
GATEWAY_ROLE, REQUERY_ROLE = "bench_gateway", "bench_requery"


@dataclass
class Step:
    """One change of the workload: SQL, and the users whose subscriptions it affects."""

    kind: str  # "in", "edit", "out"
    sql: str
    params: list[Any]
    users: list[int]
    check: Callable[[LocalCopy], bool] | None = None


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statements: int = 0
    top: list[tuple[int, str]] = field(default_factory=list)

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


def teams_of(user: int, teams: int) -> list[int]:
    return [(user * 7 + k * 13) % teams for k in range(3)]


def workload(args: argparse.Namespace, tag: str) -> list[Step]:
    """The rounds' changes (deterministic: both approaches run the same; `tag` makes
    the edited titles new for each)."""
    rng = random.Random(args.seed)
    members: dict[int, list[int]] = {}
    for user in range(args.subscriptions):
        for team in teams_of(user, args.teams):
            members.setdefault(team, []).append(user)
    steps = []
    for round_ in range(args.rounds):
        user = round_ % args.subscriptions
        team = args.teams + 1 + round_
        steps.append(Step("in", "INSERT INTO memberships VALUES (%s, %s, %s)",
                          [-1 - round_, team, f"u{user}"], [user]))  # fmt: skip
        for edit in range(args.edits):
            team = rng.choice(teams_of(rng.randrange(args.subscriptions), args.teams))
            issue = team + args.teams * rng.randrange(1 if team else 2, SMALL)
            title = f"{tag} {round_}.{edit}"
            steps.append(Step("edit", "UPDATE issues SET title = %s WHERE id = %s",
                              [title, issue], sorted(set(members[team]))))  # fmt: skip
        steps.append(Step("out", "DELETE FROM memberships WHERE id = %s", [-1 - round_], [user]))
    return steps


def create_database(admin_url: str) -> str:
    """The database `bench` (with `pg_stat_statements`) and both sides' roles: its URL."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
        for role in (GATEWAY_ROLE, REQUERY_ROLE):
            admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    url = str(psycopg.conninfo.make_conninfo(admin_url, dbname="bench"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    return url


def setup_database(admin_url: str, args: argparse.Namespace) -> str:
    url = create_database(admin_url)
    big = args.teams + 1  # big teams: teams+1 .. teams+rounds
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE issues (id bigint PRIMARY KEY, team_id int NOT NULL, title text);"
            "CREATE INDEX ON issues (team_id);"
            "CREATE TABLE memberships (id bigint PRIMARY KEY, team_id int NOT NULL,"
            " user_id text NOT NULL);"
            "CREATE INDEX ON memberships (user_id);"
        )
        conn.execute(
            "INSERT INTO issues SELECT i, i %% %s, 'issue ' || i FROM generate_series(1, %s) i",
            [args.teams, args.teams * SMALL],
        )
        conn.execute(
            "INSERT INTO issues SELECT %s + i, %s + i / %s, 'big ' || i"
            " FROM generate_series(0, %s) i",
            [args.teams * SMALL + 1, big, args.moved, args.moved * args.rounds - 1],
        )
        conn.execute(
            "INSERT INTO memberships SELECT u * 3 + k, (u * 7 + k * 13) %% %s, 'u' || u"
            " FROM generate_series(0, %s) u, generate_series(0, 2) k",
            [args.teams, args.subscriptions - 1],
        )
        # Fresh tables have no statistics until autovacuum's next round: the plans
        # (pgsift's loads, the re-query server's statements) would depend on when.
        conn.execute("ANALYZE")
    return url


def as_role(url: str, role: str) -> str:
    return str(psycopg.conninfo.make_conninfo(url, user=role))


def statements(url: str, role: str) -> tuple[int, list[tuple[int, str]]]:
    """Statements `role` ran since the last reset, and the most frequent ones."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT s.calls, s.query FROM pg_stat_statements s"
            " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s ORDER BY s.calls DESC",
            [role],
        ).fetchall()
    return sum(int(calls) for calls, _ in rows), [(int(c), str(q)) for c, q in rows[:8]]


def reset_statements(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


@contextlib.contextmanager
def services(
    args: argparse.Namespace, setup: Callable[[str, argparse.Namespace], str] = setup_database
) -> Iterator[tuple[str, str]]:
    """Postgres (pg_stat_statements loaded) and Redis: the bench database's URL (made by
    `setup`, from the admin URL) and Redis's."""
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            # The embedded server turns synchronous_commit off; then WAL reaches the
            # walsender (and capture) only at the WAL writer's next round (200 ms).
            admin.execute("ALTER SYSTEM SET synchronous_commit = on")
            admin.execute("ALTER SYSTEM SET max_connections = 300")
            admin.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        postgres.restart()
        yield setup(postgres.url, args), redis_server.url


@contextlib.contextmanager
def capture(url: str, redis_url: str) -> Iterator[None]:
    process = subprocess.Popen(
        [str(PGSIFT), "--log-level", "WARNING", "capture", "--database-url", url,
         "--redis-url", redis_url, "--all", "--setup"]
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while not conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE active AND database = 'bench'"
            ).fetchone():
                if process.poll() is not None:
                    raise SystemExit("capture exited")
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


class Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


async def stop(tasks: Iterable[asyncio.Task[Any]], connections: Iterable[Closable]) -> None:
    """Cancel a side's receiving tasks, then close its connections."""
    for task in tasks:
        task.cancel()
    for connection in connections:
        await connection.close()


def gateway_metrics(ws_url: str, names: Sequence[str]) -> dict[str, float | None]:
    """The gateway's /metrics values of `names` (None: this version exports no such one)."""
    import httpx

    base = ws_url.replace("ws://", "http://").rsplit("/", 1)[0]
    text = httpx.get(f"{base}/metrics").text
    out: dict[str, float | None] = dict.fromkeys(names)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in out:
            out[name] = float(value)
    return out


@contextlib.contextmanager
def serve(url: str, redis_url: str) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(PGSIFT), "--log-level", "WARNING", "serve", "--database-url",
               as_role(url, GATEWAY_ROLE), "--redis-url", redis_url, "--port", str(port)]
    profile = os.environ.get("PGSIFT_BENCH_PROFILE")  # py-spy's output file (SVG)
    if profile:
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [str(py_spy), "record", "-o", profile, "--format", "raw", "--rate", "200", "--",
                   *command]
    process = subprocess.Popen(
        command,
        env={**os.environ, "PGSIFT_AUTH_ANONYMOUS": "true",
             "PGSIFT_GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION": "100000"},
    )
    try:
        import httpx

        while True:
            if process.poll() is not None:
                raise SystemExit("pgsift serve exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        # py-spy writes its profile on SIGINT (and stops the gateway with it).
        process.send_signal(signal.SIGINT if profile else signal.SIGTERM)
        process.wait(60)  # closing 10,000 subscriptions on a loaded machine


async def until(check: Callable[[], bool], what: str, wait_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + wait_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"never happened: {what}")
        await asyncio.sleep(0.001)


def all_started(copies: list[LocalCopy], tasks: list[asyncio.Task[None]]) -> bool:
    """Whether every copy is up to date; a subscription that ended stops the bench."""
    for task in tasks:
        if task.done():
            raise SystemExit(f"a subscription ended while starting: {task.exception()!r}")
    return all(copy.up_to_date for copy in copies)


def settle() -> None:
    """Before the workload: the clients' copies (all subscriptions' rows, in this one
    process) frozen, out of the collector's reach. Else its full passes over them
    (up to ~400 ms at 10,000 subscriptions) land in either side's timings, which a
    real client, holding one copy, never sees."""
    gc.collect()
    gc.freeze()


def holds(copy: LocalCopy, rows: int, at_least: bool) -> bool:
    return len(copy.rows) >= rows if at_least else len(copy.rows) <= rows


def titled(copy: LocalCopy, key: str, title: str) -> bool:
    row = copy.rows.get(key)
    return row is not None and row.get("title") == title


async def pgsift_run(args: argparse.Namespace, ws_url: str, url: str) -> Results:
    """The workload against pgsift, then the plain transactions (not counted)."""
    results = Results()
    copies = [LocalCopy() for _ in range(args.subscriptions)]
    conns = [await SyncConnection.connect(ws_url) for _ in range(10)]

    async def follow(user: int) -> None:
        async for message in conns[user % len(conns)].sync(QUERY, [f"u{user}"]):
            copies[user].apply(message)

    tasks: list[asyncio.Task[None]] = []
    try:
        # In waves: 10,000 bootstraps at once wait past the snapshot pool's timeout.
        for first in range(0, args.subscriptions, STARTING):
            users = range(first, min(first + STARTING, args.subscriptions))
            tasks.extend(asyncio.create_task(follow(user)) for user in users)
            await until(partial(all_started, copies[: users.stop], tasks), "copies up to date")
        settle()
        reset_statements(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for step in workload(args, "pgsift"):
                copy = copies[step.users[0]] if step.users else None
                before = len(copy.rows) if copy is not None else 0
                started = time.perf_counter()
                await conn.execute(step.sql, step.params)
                if copy is None:
                    continue
                if step.kind == "in":
                    await until(partial(holds, copy, before + args.moved, True), "move-in")
                elif step.kind == "out":
                    await until(partial(holds, copy, before - args.moved, False), "move-out")
                else:
                    key = key_of({"id": str(step.params[1])})
                    await until(partial(titled, copy, key, step.params[0]), "the edit")
                results.add(step.kind, time.perf_counter() - started)
            results.statements, results.top = statements(url, GATEWAY_ROLE)
            for round_ in range(args.rounds):
                user = round_ % args.subscriptions
                copy, before = copies[user], len(copies[user].rows)
                first = 10_000_000 * (round_ + 1)
                started = time.perf_counter()
                await conn.execute(
                    "INSERT INTO issues SELECT %s + i, %s, 'plain' FROM generate_series(1, %s) i",
                    [first, teams_of(user, args.teams)[0], args.moved],
                )
                await until(partial(holds, copy, before + args.moved, True), "the insert")
                results.add("plain", time.perf_counter() - started)
                await conn.execute("DELETE FROM issues WHERE id > %s", [first])
                await until(partial(holds, copy, before, False), "the delete")
        assert not any(c.must_refetch for c in copies)
    finally:
        await stop(tasks, conns)
    return results


def run(args: argparse.Namespace) -> tuple[Results, Results]:
    """pgsift's results and the re-query baseline's, in one run on one database."""
    with services(args) as (url, redis_url):
        with capture(url, redis_url), serve(url, redis_url) as ws_url:
            live = asyncio.run(pgsift_run(args, ws_url, url))
        requery.install_triggers(url)
        with requery.server_process(as_role(url, REQUERY_ROLE), args.requery_batch) as ws_url:
            baseline = asyncio.run(requery.measure(args, ws_url, url))
    return live, baseline
