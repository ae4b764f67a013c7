"""Nested relational subscriptions: a change deep in a chain, live.

    .venv/bin/python bench/relational/nested.py [--subscriptions 100] [--held 300]
        [--moved 200] [--rounds 20] [--edits 10] [--seed 1] [--requery-batch 100]
        [--statements]

`subscriptions` orgs, each with three members, each member the lead of one
project, each project a team of `held / 3` issues; one subscription per org:
`SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM projects
WHERE lead IN (SELECT user_id FROM members WHERE org = $1))` (two levels: the
members' set is read by the projects' set, which the issues read).

The workload, per round (closed loop: one change at a time, the next after the
last one arrived and, for the re-query server, after its pass ended):
* a member joins an org: a row of the deepest table, which brings a project
  of `moved` issues into that org's subscription, and no other;
* `edits` issue edits, one transaction each, in random orgs' teams;
* the member leaves: the issues move out.

Per change: commit -> the last affected row in the client's copy (p50 / p99 /
max), the frames and rows its client received (everything the clients got
from one commit to the next: a refetch sends the whole copy again, an
incremental move only the moved rows), the clients' `mustRefetch`s (the client
then drops its copy and subscribes again, as clients do), and the Postgres
statements of each side's role (`pg_stat_statements`; `--statements`: the
most frequent). Only the public protocol is used: a gateway answering a deep
change with `mustRefetch` (docs/relational.md, "Nested sets") or with moves.

Baselines in the same run, same database, same changes: the re-query server
(`requery.py --shape nested`: re-runs every subscription reading the changed
table, `--requery-batch` per statement, sends diffs), and a direct `SELECT` of
one subscription's rows (the query itself, timed once per org at the end).
After each move the moved subscription's copy, and at the end of each side
every client's copy, must equal that `SELECT` (printed; the bench exits 1
otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import live
import psycopg
import requery
import websockets
from run import percentiles

from pgsift.middleware.gateway.client import LocalCopy, SyncConnection, key_of

LEADS = "SELECT user_id FROM members WHERE org = $1"
QUERY = (
    "SELECT id, title FROM issues WHERE team_id IN"
    f" (SELECT team_id FROM projects WHERE lead IN ({LEADS}))"
)
ORACLE = QUERY.replace("$1", "%s")
TEAMS = 3  # per org: its members, each the lead of one team's project
KINDS = {"in": "member joins (move-in)", "edit": "issue edit", "out": "member leaves (move-out)"}
COUNTED = ("frames", "rows", "refetches", "statements")
STATEMENTS = (
    "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s"
    " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s"
)


def org(sub: int) -> str:
    return f"o{sub}"


@dataclass
class Step:
    """One change: SQL, the subscription it affects, the issues it moves (or edits)."""

    kind: str  # "in", "edit", "out"
    sql: str
    params: list[Any]
    sub: int
    ids: list[int]
    keys: list[str]  # `ids` as the gateway's client keys them
    title: str = ""


def first_big(args: argparse.Namespace) -> int:
    """The id of the first issue of the projects that move (after the orgs' issues)."""
    return int(TEAMS * args.subscriptions * (args.held // TEAMS) + 1)


def workload(args: argparse.Namespace, tag: str) -> list[Step]:
    """The rounds' changes (deterministic; `tag` makes each side's titles new)."""
    rng = random.Random(args.seed)
    per_team, big = args.held // TEAMS, first_big(args)
    steps = []
    for round_ in range(args.rounds):
        sub = round_ % args.subscriptions
        ids = list(range(big + round_ * args.moved, big + (round_ + 1) * args.moved))
        keys = [key_of({"id": str(id_)}) for id_ in ids]
        member = [-1 - round_, f"big{round_}", org(sub)]
        steps.append(Step("in", "INSERT INTO members VALUES (%s, %s, %s)", member, sub, ids, keys))
        for edit in range(args.edits):
            other = rng.randrange(args.subscriptions)
            issue = (other * TEAMS + rng.randrange(TEAMS)) * per_team + rng.randrange(per_team) + 1
            title = f"{tag} {round_}.{edit}"
            steps.append(Step("edit", "UPDATE issues SET title = %s WHERE id = %s", [title, issue],
                              other, [issue], [key_of({"id": str(issue)})], title))  # fmt: skip
        leave = "DELETE FROM members WHERE id = %s"
        steps.append(Step("out", leave, [-1 - round_], sub, ids, keys))
    return steps


def setup_database(admin_url: str, args: argparse.Namespace) -> str:
    url = live.create_database(admin_url)
    teams, per_team = TEAMS * args.subscriptions, args.held // TEAMS
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE issues (id bigint PRIMARY KEY, team_id int NOT NULL, title text);"
            "CREATE INDEX ON issues (team_id);"
            "CREATE TABLE projects (id int PRIMARY KEY, team_id int NOT NULL, lead text NOT NULL);"
            "CREATE INDEX ON projects (lead);"
            "CREATE TABLE members (id int PRIMARY KEY, user_id text NOT NULL, org text NOT NULL);"
            "CREATE INDEX ON members (org);"
        )
        conn.execute(
            "INSERT INTO issues SELECT i, (i - 1) / %s, 'issue ' || i"
            " FROM generate_series(1, %s) i",
            [per_team, teams * per_team],
        )
        # The projects that move: one per round, `moved` issues, led by nobody's member.
        conn.execute(
            "INSERT INTO issues SELECT %s + k, %s + k / %s, 'big ' || k"
            " FROM generate_series(0, %s) k",
            [first_big(args), teams, args.moved, args.moved * args.rounds - 1],
        )
        conn.execute("INSERT INTO projects SELECT t, t, 'u' || t FROM generate_series(0, %s) t"
                     " UNION ALL SELECT t, t, 'big' || (t - %s::int)"
                     " FROM generate_series(%s::int, %s) t",
                     [teams - 1, teams, teams, teams + args.rounds - 1])  # fmt: skip
        conn.execute(
            "INSERT INTO members SELECT t, 'u' || t, 'o' || (t / %s) FROM generate_series(0, %s) t",
            [TEAMS, teams - 1],
        )
        conn.execute("ANALYZE")  # plans independent of autovacuum's timing (live.py)
    return url


@dataclass
class Side:
    """One approach's clients, as the driver sees them."""

    role: str
    holds: Callable[[Step], bool]  # the step's change is in its client's copy
    copy: Callable[[int], dict[int, str]]  # a subscription's copy: id -> title
    tally: Callable[[], tuple[int, int, int]]  # frames, rows, refetches: all clients so far
    # After the n-th change: the server is done (the gateway works per change: None).
    idle: Callable[[int], Awaitable[None]] | None = None


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # kind -> what (COUNTED) -> one value per change
    counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    statements: int = 0
    top: list[tuple[int, str]] = field(default_factory=list)
    exact: int = 0  # copies equal to `SELECT` at the end
    moved_exact: int = 0  # the moved subscription's copy equal to `SELECT` after its move
    select: list[float] = field(default_factory=list)  # the direct SELECTs' seconds
    selected: int = 0  # rows they returned
    gateway: dict[str, float | None] = field(default_factory=dict)  # its /metrics at the end


async def selected(conn: psycopg.AsyncConnection[Any], sub: int) -> dict[int, str]:
    cursor = await conn.execute(ORACLE, [org(sub)])
    return {int(id_): title for id_, title in await cursor.fetchall()}


async def counted(side: Side, conn: psycopg.AsyncConnection[Any]) -> list[int]:
    cursor = await conn.execute(STATEMENTS, [side.role])
    row = await cursor.fetchone()
    return [*side.tally(), int(row[0]) if row else 0]


async def drive(side: Side, steps: Sequence[Step], url: str, subscriptions: int) -> Results:
    """The workload, closed loop, then every copy against `SELECT`."""
    results = Results()
    live.settle()
    live.reset_statements(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        mark = await counted(side, conn)
        for done, step in enumerate(steps, 1):
            started = time.perf_counter()
            await conn.execute(step.sql, step.params)
            await live.until(partial(side.holds, step), f"{step.kind} of {step.params}")
            results.latencies.setdefault(step.kind, []).append(time.perf_counter() - started)
            if side.idle is not None:
                await side.idle(done)
            now = await counted(side, conn)
            per_kind = results.counts.setdefault(step.kind, {what: [] for what in COUNTED})
            for what, before, after in zip(COUNTED, mark, now, strict=True):
                per_kind[what].append(after - before)
            mark = now
            if step.kind != "edit":  # not timed; after the counts (not the side's role)
                results.moved_exact += side.copy(step.sub) == await selected(conn, step.sub)
        results.statements, results.top = live.statements(url, side.role)
        for sub in range(subscriptions):
            started = time.perf_counter()
            rows = await selected(conn, sub)
            results.select.append(time.perf_counter() - started)
            results.selected += len(rows)
            results.exact += side.copy(sub) == rows
    return results


class Gateway:
    """pgsift's clients: one copy per org; told to refetch, a client drops its copy and
    subscribes again (as `tests/.../refetching.py`'s clients do)."""

    def __init__(self, subscriptions: int) -> None:
        self.copies = [LocalCopy() for _ in range(subscriptions)]
        self.frames = self.rows = self.refetches = 0

    async def follow(self, conn: SyncConnection, sub: int) -> None:
        copy = self.copies[sub]
        while True:
            async with contextlib.aclosing(conn.sync(QUERY, [org(sub)])) as messages:
                async for message in messages:
                    self.frames += 1
                    self.rows += len(message["changes"])
                    copy.apply(message)
                    if copy.must_refetch:
                        self.refetches += 1
                        copy.reset()  # before any await: nobody sees the refetch state
                        break
                else:
                    return  # the subscription ended

    def holds(self, step: Step) -> bool:
        copy = self.copies[step.sub]
        if step.kind == "edit":
            row = copy.rows.get(step.keys[0])
            return row is not None and row.get("title") == step.title
        if not copy.up_to_date:  # refetching
            return False
        if step.kind == "in":
            return all(key in copy.rows for key in step.keys)
        return not any(key in copy.rows for key in step.keys)

    def copy(self, sub: int) -> dict[int, str]:
        if not self.copies[sub].up_to_date:
            return {}
        return {int(row["id"]): row["title"] for row in self.copies[sub].rows.values()}


async def pgsift_run(args: argparse.Namespace, ws_url: str, url: str) -> Results:
    clients = Gateway(args.subscriptions)
    conns = [await SyncConnection.connect(ws_url) for _ in range(10)]
    tasks: list[asyncio.Task[None]] = []
    try:
        for first in range(0, args.subscriptions, live.STARTING):  # in waves, as live.py
            subs = range(first, min(first + live.STARTING, args.subscriptions))
            tasks.extend(asyncio.create_task(clients.follow(conns[s % 10], s)) for s in subs)
            copies = clients.copies[: subs.stop]
            await live.until(partial(live.all_started, copies, tasks), "copies up to date")
        side = Side(live.GATEWAY_ROLE, clients.holds, clients.copy,
                    lambda: (clients.frames, clients.rows, clients.refetches))  # fmt: skip
        results = await drive(side, workload(args, "pgsift"), url, args.subscriptions)
        results.gateway = live.gateway_metrics(ws_url, GAUGES)
        return results
    finally:
        await live.stop(tasks, conns)


async def requery_run(args: argparse.Namespace, ws_url: str, url: str) -> Results:
    copies: dict[str, requery.Rows] = {}
    started: set[str] = set()
    passes, tally = [0], requery.Tally()
    sockets = [await websockets.connect(ws_url, max_size=None) for _ in range(10)]
    tasks = [asyncio.create_task(requery.receive(ws, copies, started, passes, tally))
             for ws in sockets]  # fmt: skip

    def holds(step: Step) -> bool:
        copy = copies[org(step.sub)]
        if step.kind == "edit":
            return copy.get(step.ids[0]) == step.title
        if step.kind == "in":
            return all(id_ in copy for id_ in step.ids)
        return not any(id_ in copy for id_ in step.ids)

    async def idle(done: int) -> None:  # the pass over every subscription is over
        await live.until(partial(requery.passed, passes, done), "the pass")

    side = Side(live.REQUERY_ROLE, holds, lambda sub: copies[org(sub)],
                lambda: (tally.frames, tally.rows, 0), idle)  # fmt: skip
    try:
        for sub in range(args.subscriptions):
            await sockets[sub % len(sockets)].send(json.dumps({"subscribe": org(sub)}))
        await live.until(lambda: len(started) == args.subscriptions, "re-query copies")
        return await drive(side, workload(args, "re-query"), url, args.subscriptions)
    finally:
        await live.stop(tasks, sockets)


def run(args: argparse.Namespace) -> tuple[Results, Results]:
    """pgsift's results and the re-query server's, in one run on one database."""
    with live.services(args, setup_database) as (url, redis_url):
        with live.capture(url, redis_url), live.serve(url, redis_url) as ws_url:
            ours = asyncio.run(pgsift_run(args, ws_url, url))
        requery.install_triggers(url, requery.NESTED_TABLES)
        role_url = live.as_role(url, live.REQUERY_ROLE)
        with requery.server_process(role_url, args.requery_batch, "nested") as ws_url:
            theirs = asyncio.run(requery_run(args, ws_url, url))
    return ours, theirs


GAUGES = ("pgsift_gateway_inner_sets", "pgsift_gateway_inner_set_bytes",
          "pgsift_gateway_nested_set_moves")  # fmt: skip


def ms(timings: Sequence[float]) -> str:
    return "{:.1f} / {:.1f} / {:.1f}".format(*percentiles(timings))


def per_change(results: Results, kind: str, what: str) -> str:
    """Mean per change (and the most at one change)."""
    values = results.counts[kind][what]
    mean = sum(values) / len(values)
    return f"{mean:,.{0 if mean >= 10 else 1}f} (max {max(values):,})"


def report(args: argparse.Namespace, ours: Results, theirs: Results) -> bool:
    """Print the table; whether every copy of both sides equalled `SELECT`."""
    subs = args.subscriptions
    rows: list[tuple[str, str, str]] = []
    for kind, name in KINDS.items():
        rows.append((f"{name}: ms p50/p99/max", ms(ours.latencies[kind]),
                     ms(theirs.latencies[kind])))  # fmt: skip
        for what in COUNTED:
            label = "mustRefetch" if what == "refetches" else what
            rows.append((f"  {label} per change", per_change(ours, kind, what),
                         per_change(theirs, kind, what)))  # fmt: skip
    every = [[t for kind in KINDS for t in r.latencies[kind]] for r in (ours, theirs)]
    rows.append(("every change: ms p50/p99/max", ms(every[0]), ms(every[1])))
    rows.append(("Postgres statements, the workload", f"{ours.statements:,}",
                 f"{theirs.statements:,}"))  # fmt: skip
    moves = 2 * args.rounds
    rows.append(("moved copy equal to SELECT after a move", f"{ours.moved_exact}/{moves}",
                 f"{theirs.moved_exact}/{moves}"))  # fmt: skip
    rows.append(("copies equal to SELECT at the end", f"{ours.exact}/{subs}",
                 f"{theirs.exact}/{subs}"))  # fmt: skip
    held = ours.selected / max(len(ours.select), 1)
    print(f"\n{subs} nested subscriptions (org -> members -> projects -> issues), {held:,.0f}"
          f" issues each; {args.rounds} rounds of: a member joins an org (moves {args.moved}"
          f" issues into its subscription), {args.edits} issue edits, the member leaves; load"
          f" average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. re-query: a server"
          " re-running every subscription reading the changed table,"
          f" {args.requery_batch} per statement, sending diffs (requery.py)")  # fmt: skip
    header = f"{'measure':<40} {'pgsift':>22} {'re-query':>22}"
    print(header)
    print("-" * len(header))
    for name, pgsift, other in rows:
        print(f"{name:<40} {pgsift:>22} {other:>22}")
    print(f"direct SELECT of one subscription's rows (the query, once per org): {ms(ours.select)}"
          f" ms p50/p99/max, {held:,.0f} rows, 1 statement")  # fmt: skip
    sets, size, judged = (ours.gateway.get(name) for name in GAUGES)
    print(f"gateway's inner sets at the end: {sets or 0:,.0f} sets, {(size or 0) / 2**20:.2f} MiB"
          " measured (sets and table mirrors); nested set changes judged in memory: "
          + ("n/a (not in this version)" if judged is None else f"{judged:,.0f}"))
    if args.statements:
        for label, results in (("pgsift", ours), ("re-query", theirs)):
            print(f"\n{label}: most frequent statements")
            for calls, query in results.top:
                print(f"{calls:>7}  {' '.join(query.split())[:100]}")
    return all(r.exact == subs and r.moved_exact == moves for r in (ours, theirs))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in (("subscriptions", 100), ("held", 300), ("moved", 200), ("rounds", 20),
                          ("edits", 10), ("seed", 1), ("requery-batch", 100)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--statements", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not report(args, *run(args)):
        raise SystemExit("a copy differs from SELECT of its query")


if __name__ == "__main__":
    main()
