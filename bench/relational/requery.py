"""The re-query baseline of `bench/relational/run.py` (c): a live-query server.

What live-query servers do (Hasura's live queries, PostGraphile's `@live`): on a
change to a table, re-run the query of every subscription that reads the table,
compare with the last result, and send what changed. Hasura batches ("multiplexes")
the subscriptions of one query with different variables into one statement of up
to 100 of them (`HASURA_GRAPHQL_LIVE_QUERIES_MULTIPLEXED_BATCH_SIZE`); this server
does the same (`--batch`, 1 for one statement per subscription). "Affected" is
therefore table level: every subscription here reads `issues` and `memberships`,
so every change of the workload re-runs every subscription. A smarter server
that re-ran only the subscriptions whose parameters a change can reach would need
what pgsift does (the inner sets); none of the usual ones does.

Where it favours the baseline: it learns of a change by a statement-level trigger's
NOTIFY (delivered at commit; no logical decoding, no polling interval: Hasura
polls every second), re-runs at once (no throttle), and sends a diff (Hasura sends
the whole result again). Where it does not: it is a Python process like the
gateway, and sends one JSON frame per changed subscription over websockets.

Server (a subprocess of the bench):

    python bench/relational/requery.py --database-url URL --port PORT [--batch 100]
        [--shape flat|nested]

`flat`: run.py's query, a user's teams' issues; `nested`: `nested.py`'s, an org's
members' projects' teams' issues (two levels; `$1` is the org).

Protocol: the client sends `{"subscribe": user}` (the query's `$1`); the server
answers `{"s": user, "rows": [[id, title], ...]}`, then for every change
`{"s": user, "up": [[id, title], ...], "del": [id, ...]}`.

The client side (`measure`) drives the same workload as pgsift's in `live.py` and
times each change from the commit to the last row at its client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
import websockets

CHANNEL = "bench_changes"
TABLES = ("issues", "memberships")
# Hasura's multiplexed form: the variables as an array, the query once per row of it.
BATCHED = (
    "SELECT p.user_id, i.id, i.title FROM unnest(%s::text[]) AS p(user_id)"
    " CROSS JOIN LATERAL (SELECT id, title FROM issues WHERE team_id IN"
    " (SELECT team_id FROM memberships WHERE user_id = p.user_id)) i"
)
# `bench/relational/nested.py`'s query, nested two levels; `$1` is an org.
NESTED_TABLES = ("issues", "projects", "members")
NESTED_BATCHED = (
    "SELECT p.org, i.id, i.title FROM unnest(%s::text[]) AS p(org)"
    " CROSS JOIN LATERAL (SELECT id, title FROM issues WHERE team_id IN"
    " (SELECT team_id FROM projects WHERE lead IN"
    " (SELECT user_id FROM members WHERE org = p.org))) i"
)
SHAPES = {"flat": (BATCHED, TABLES), "nested": (NESTED_BATCHED, NESTED_TABLES)}
NOTIFY = (
    "CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS"
    f" $$ BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$;"
)
Rows = dict[int, str]


class Server:
    """Subscriptions (one per user), their last results, and their websockets."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], batch: int, shape: str) -> None:
        self.conn = conn
        self.batch = batch
        self.query, self.read = SHAPES[shape]
        self.results: dict[str, Rows] = {}
        self.sockets: dict[str, Any] = {}
        self.tables: dict[str, frozenset[str]] = {}  # tables each subscription reads
        self.lock = asyncio.Lock()  # one connection: one query at a time
        self.rng = random.Random(1)
        self.passes = 0

    async def run_query(self, users: list[str]) -> dict[str, Rows]:
        found: dict[str, Rows] = {user: {} for user in users}
        async with self.lock:
            cursor = await self.conn.execute(self.query, [users])
            for user, id_, title in await cursor.fetchall():
                found[user][id_] = title
        return found

    async def subscribe(self, ws: Any, user: str) -> None:
        rows = (await self.run_query([user]))[user]
        self.results[user], self.sockets[user] = rows, ws
        self.tables[user] = frozenset(self.read)
        await ws.send(json.dumps({"s": user, "rows": list(rows.items())}))

    async def changed(self, tables: set[str]) -> None:
        """Re-run every subscription reading a changed table; send the diffs."""
        users = [user for user, read in self.tables.items() if read & tables]
        batches = [users[first : first + self.batch] for first in range(0, len(users), self.batch)]
        # Hasura runs its batches concurrently and pushes each one's results when it
        # is done: none comes first. One connection here, in a random order per pass.
        self.rng.shuffle(batches)
        for batch in batches:
            for user, now in (await self.run_query(batch)).items():
                was = self.results[user]
                up = [[k, v] for k, v in now.items() if was.get(k) != v]
                gone = [k for k in was if k not in now]
                self.results[user] = now
                if up or gone:
                    frame = json.dumps({"s": user, "up": up, "del": gone})
                    await self.sockets[user].send(frame)
        # Not timed: tells the bench the pass is over (the next change must not queue).
        self.passes += 1
        for ws in set(self.sockets.values()):
            await ws.send(json.dumps({"pass": self.passes}))

    async def listen(self, url: str) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()

        async def read() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                async for note in conn.notifies():
                    queue.put_nowait(note.payload)

        reader = asyncio.create_task(read())
        while not reader.done():
            tables = {await queue.get()}
            while not queue.empty():  # changes that came in meanwhile: the same pass
                tables.add(queue.get_nowait())
            await self.changed(tables)

    async def client(self, ws: Any) -> None:
        async for message in ws:
            await self.subscribe(ws, str(json.loads(message)["subscribe"]))


async def serve(url: str, port: int, batch: int, shape: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        server = Server(conn, batch, shape)
        async with websockets.serve(server.client, "127.0.0.1", port, max_size=None):
            await server.listen(url)


# The client side: the bench process.


def install_triggers(url: str, tables: tuple[str, ...] = TABLES) -> None:
    triggers = "".join(
        f"CREATE TRIGGER bench_notify AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION bench_notify();"
        for table in tables
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(NOTIFY + triggers)


@contextlib.contextmanager
def server_process(url: str, batch: int, shape: str = "flat") -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, __file__, "--database-url", url, "--port", str(port)]
    process = subprocess.Popen([*command, "--batch", str(batch), "--shape", shape])
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit("the re-query server exited")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Tally:
    """Frames and rows the clients received (a row: one in a result, an upsert or a delete)."""

    frames: int = 0
    rows: int = 0


async def receive(
    ws: Any, copies: dict[str, Rows], started: set[str], passes: list[int],
    tally: Tally | None = None,
) -> None:  # fmt: skip
    async for frame in ws:
        message = json.loads(frame)
        if "pass" in message:
            passes[0] = max(passes[0], message["pass"])
            continue
        user = message["s"]
        if tally is not None:
            tally.frames += 1
            tally.rows += len(message.get("rows", ())) + len(message.get("up", ()))
            tally.rows += len(message.get("del", ()))
        if "rows" in message:
            copies[user] = {int(k): v for k, v in message["rows"]}
            started.add(user)
            continue
        copy = copies[user]
        for key, title in message["up"]:
            copy[int(key)] = title
        for key in message["del"]:
            copy.pop(int(key), None)


def passed(passes: list[int], done: int) -> bool:
    return passes[0] >= done


def holds(copy: Rows, rows: int, at_least: bool) -> bool:
    return len(copy) >= rows if at_least else len(copy) <= rows


def titled(copy: Rows, key: int, title: str) -> bool:
    return copy.get(key) == title


async def measure(args: argparse.Namespace, ws_url: str, url: str) -> Any:
    """`live.pgsift_run`'s workload against the re-query server: `live.Results`."""
    import live  # here: live imports this module

    results = live.Results()
    copies: dict[str, Rows] = {}
    started: set[str] = set()
    passes = [0]
    sockets = [await websockets.connect(ws_url, max_size=None) for _ in range(10)]
    tasks = [asyncio.create_task(receive(ws, copies, started, passes)) for ws in sockets]
    try:
        for user in range(args.subscriptions):
            await sockets[user % len(sockets)].send(json.dumps({"subscribe": f"u{user}"}))
        await live.until(lambda: len(started) == args.subscriptions, "re-query copies")
        live.settle()
        live.reset_statements(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for done, step in enumerate(live.workload(args, "re-query"), 1):
                copy = copies[f"u{step.users[0]}"] if step.users else None
                before = len(copy) if copy is not None else 0
                begun = time.perf_counter()
                await conn.execute(step.sql, step.params)
                if copy is None:
                    await live.until(partial(passed, passes, done), "the pass")
                    continue
                if step.kind == "in":
                    await live.until(partial(holds, copy, before + args.moved, True), "move-in")
                elif step.kind == "out":
                    await live.until(partial(holds, copy, before - args.moved, False), "move-out")
                else:
                    check = partial(titled, copy, step.params[1], step.params[0])
                    await live.until(check, "the edit")
                results.add(step.kind, time.perf_counter() - begun)
                # The next change after the server's pass over every subscription
                # (closed loop, as for pgsift: no change queues behind another).
                await live.until(partial(passed, passes, done), "the pass")
            results.statements, results.top = live.statements(url, live.REQUERY_ROLE)
    finally:
        await live.stop(tasks, sockets)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="flat")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.database_url, args.port, args.batch, args.shape))


if __name__ == "__main__":
    main()
