"""Relational moves live: a membership change -> the moved rows at a websocket client.

    .venv/bin/python bench/relational/live.py [--subscriptions 100] [--rounds 10]
        [--moved 1000] [--teams 1000]

Starts a throwaway Postgres and Redis, `pgsift capture` and `pgsift serve` as
subprocesses. Issues over `teams` teams (20 each), plus `rounds` big teams of
`moved` issues each; `subscriptions` users, each a member of three small teams,
each subscribed over websockets to
`SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM memberships
WHERE user_id = $1)`. Each round one user joins a big team (its issues move
in), then leaves it (they move out).

* pgsift: commit -> the client's copy holds every moved row (and, for the
  move-out, none of them); the gateway reads the moved rows once, at a
  snapshot (one region query), and sends them.
* pgsift, plain tx (for scale): a transaction inserting (deleting) as many rows
  in a team the user is in: the delivery path without a move.
* re-query (baseline, same run, same rounds): what a live-query server does on
  a relevant change: re-run the subscription's whole query and diff it with
  the previous result. Timed from the commit to the diff, without the time such
  a server needs to learn of the change (which favours the baseline).

Latency p50 / p99 and moved rows per second are printed for both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.gateway.client import LocalCopy, SyncConnection

PGSIFT = Path(sys.executable).with_name("pgsift")
TEAMS_OF = "SELECT team_id FROM memberships WHERE user_id = $1"
QUERY = f"SELECT id, title FROM issues WHERE team_id IN ({TEAMS_OF})"
SMALL = 20  # issues per small team
WAIT_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--moved", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=1000)
    args = parser.parse_args()
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            # The embedded server turns synchronous_commit off; then WAL reaches the
            # walsender (and capture) only at the WAL writer's next round (200 ms).
            admin.execute("ALTER SYSTEM SET synchronous_commit = on")
            admin.execute("ALTER SYSTEM SET max_connections = 300")
        postgres.restart()
        url = setup_database(postgres.url, args)
        with capture(url, redis_server.url), serve(url, redis_server.url) as ws_url:
            live, plain = asyncio.run(pgsift_rounds(args, ws_url, url))
        baseline = requery_rounds(args, url)
    print_table(args, [
        ("pgsift (move query)", live),
        ("re-query + diff", baseline),
        ("pgsift, plain tx", plain),
    ])


def setup_database(admin_url: str, args: argparse.Namespace) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    url = str(psycopg.conninfo.make_conninfo(admin_url, dbname="bench"))
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
    return url


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


@contextlib.contextmanager
def serve(url: str, redis_url: str) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(PGSIFT), "--log-level", "WARNING", "serve", "--database-url", url,
         "--redis-url", redis_url, "--port", str(port)],
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
        process.terminate()
        process.wait(10)


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"never happened: {what}")
        await asyncio.sleep(0.001)


def holds(copy: LocalCopy, rows: int, at_least: bool) -> bool:
    return len(copy.rows) >= rows if at_least else len(copy.rows) <= rows


async def pgsift_rounds(
    args: argparse.Namespace, ws_url: str, url: str
) -> tuple[list[float], list[float]]:
    """Seconds from commit to the moved rows at the client, per move (in and out); and,
    for comparison, per plain transaction inserting (deleting) as many rows."""
    copies = [LocalCopy() for _ in range(args.subscriptions)]
    conns = [await SyncConnection.connect(ws_url) for _ in range(10)]

    async def follow(user: int) -> None:
        async for message in conns[user % len(conns)].sync(QUERY, [f"u{user}"]):
            copies[user].apply(message)

    tasks = [asyncio.create_task(follow(user)) for user in range(args.subscriptions)]
    timings: list[float] = []
    plain: list[float] = []
    try:
        await until(lambda: all(c.up_to_date for c in copies), "every copy up to date")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for round_ in range(args.rounds):
                user = round_ % args.subscriptions
                copy, before = copies[user], len(copies[user].rows)
                team = args.teams + 1 + round_
                started = time.perf_counter()
                await conn.execute(
                    "INSERT INTO memberships VALUES (%s, %s, %s)", [-1 - round_, team, f"u{user}"]
                )
                await until(partial(holds, copy, before + args.moved, True), "the move-in")
                timings.append(time.perf_counter() - started)
                started = time.perf_counter()
                await conn.execute("DELETE FROM memberships WHERE id = %s", [-1 - round_])
                await until(partial(holds, copy, before, False), "the move-out")
                timings.append(time.perf_counter() - started)
                # The same number of rows in one transaction of a team the user is in.
                first = 10_000_000 * (round_ + 1)
                started = time.perf_counter()
                await conn.execute(
                    "INSERT INTO issues SELECT %s + i, %s, 'plain' FROM generate_series(1, %s) i",
                    [first, (user * 7) % args.teams, args.moved],
                )
                await until(partial(holds, copy, before + args.moved, True), "the insert")
                plain.append(time.perf_counter() - started)
                started = time.perf_counter()
                await conn.execute("DELETE FROM issues WHERE id > %s", [first])
                await until(partial(holds, copy, before, False), "the delete")
                plain.append(time.perf_counter() - started)
        assert not any(c.must_refetch for c in copies)
    finally:
        for task in tasks:
            task.cancel()
        for conn_ in conns:
            await conn_.close()
    return timings, plain


def requery_rounds(args: argparse.Namespace, url: str) -> list[float]:
    """The same rounds, each answered by re-running the query and diffing."""
    timings: list[float] = []
    sql = QUERY.replace("$1", "%s")
    with psycopg.connect(url, autocommit=True) as conn:
        for round_ in range(args.rounds):
            user = f"u{round_ % args.subscriptions}"
            previous = {row[0]: row for row in conn.execute(sql, [user]).fetchall()}
            for statement, values in (
                ("INSERT INTO memberships VALUES (%s, %s, %s)",
                 [-1 - round_, args.teams + 1 + round_, user]),
                ("DELETE FROM memberships WHERE id = %s", [-1 - round_]),
            ):
                started = time.perf_counter()
                conn.execute(statement, values)
                now = {row[0]: row for row in conn.execute(sql, [user]).fetchall()}
                moved = {k for k in now.keys() ^ previous.keys()}
                moved |= {k for k in now.keys() & previous.keys() if now[k] != previous[k]}
                timings.append(time.perf_counter() - started)
                assert len(moved) == args.moved, len(moved)
                previous = now
    return timings


def print_table(args: argparse.Namespace, results: list[tuple[str, list[float]]]) -> None:
    print(f"\nmoves of {args.moved} rows into / out of one of {args.subscriptions} "
          f"subscriptions, {args.rounds} rounds (in + out)")
    print(f"{'approach':<22} {'p50 ms':>9} {'p99 ms':>9} {'rows/s (p50)':>14}")
    for name, timings in results:
        ordered = sorted(timings)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"{name:<22} {p50 * 1000:>9.1f} {p99 * 1000:>9.1f} {args.moved / p50:>14,.0f}")
    print("Postgres statements per membership change: pgsift one region read per affected "
          "subscription (only the moved rows); re-query one whole query per affected "
          "subscription. Per outer change (an issue edited): pgsift none, re-query one per "
          "affected subscription.")


if __name__ == "__main__":
    main()
