"""Memory per subscription of `pgsift serve`, and how fast subscriptions register.

    .venv/bin/python bench/e2e/memory.py [--subscriptions 20000] [--connections 200]
        [--shared-shapes 100] [--window 1000] [--traced 5000] [--traced-window 100]
        [--frames 12] [--top 15]
        [--compare OTHER_CHECKOUT/.venv/bin/python ...]

Starts a throwaway Postgres and Redis, `pgsift capture`, then for this checkout
(and each `--compare` checkout's Python, measured the same way in the same run):

1. A fresh `serve`; `subscriptions` sync subscriptions over `connections` light
   websocket clients (raw graphql-transport-ws frames, only counted), each on
   its own shape (`bucket = $1`, one bucket each), at most `window` not yet up to
   date at a time: seconds until all are up to date, subscriptions per second,
   `serve`'s RSS growth per subscription (measured after a warm-up of
   `connections` subscriptions).
2. The same over `shared-shapes` shapes only: the difference to 1 is the shapes'
   own share; this row is what a subscription costs beyond its shape.
3. A `serve` under tracemalloc (`traced_serve.py`, `frames` frames per
   allocation): Python memory allocated between a snapshot after the warm-up and
   one after `traced` more subscriptions (distinct shapes), per subscription, and
   the allocators it went to: by the line that allocated, and by the innermost
   line of pgsift's own code on the way there (what of ours caused it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import websockets
from run import capture, role_url, rss_kb, serve, setup_database
from websockets.asyncio.client import ClientConnection

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.gateway.client import SUBPROTOCOL, SYNC_SUBSCRIPTION

QUERY = "SELECT id, bucket, value, ts FROM items WHERE bucket = $1"
UP_TO_DATE = re.compile(r'"upToDate": ?true')
TRACED = Path(__file__).with_name("traced_serve.py")
SETTLE_S = 1.0  # after the last subscription is up to date, before RSS is read


@dataclass
class Row:
    """One line of the first table."""

    checkout: str
    name: str
    subscriptions: int
    shapes: int
    up_s: float | None = None
    rss_kb_per_sub: float | None = None
    traced_b_per_sub: float | None = None
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)


class LightClients:
    """Websockets that send `subscribe` frames and count what comes back, parsing little."""

    def __init__(self) -> None:
        self.up_to_date = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.sent = 0
        self._conns: list[ClientConnection] = []
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, ws_url: str, connections: int) -> None:
        for _ in range(connections):
            ws = await websockets.connect(
                ws_url, subprotocols=[SUBPROTOCOL], max_size=None  # type: ignore[list-item]
            )
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            reply = json.loads(await ws.recv())
            if reply.get("type") != "connection_ack":
                raise SystemExit(f"expected connection_ack, got {reply}")
            self._conns.append(ws)
            self._readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode()
                if UP_TO_DATE.search(text):
                    self.up_to_date += 1
                elif '"errors"' in text or '"type":"error"' in text:
                    self.errors += 1
                    self.error_kinds[text[:120]] += 1
                elif '"ping"' in text:
                    await ws.send('{"type": "pong"}')

    async def subscribe(
        self, count: int, shapes: int, window: int, timeout_s: float
    ) -> float | None:
        """Send `count` more subscriptions (bucket = n % shapes), at most `window` not yet
        up to date at a time; seconds until all are, None after `timeout_s`."""
        started = time.monotonic()
        target = self.up_to_date + self.errors + count
        for _ in range(count):
            while self.sent - self.up_to_date - self.errors >= window:
                await asyncio.sleep(0.01)
            n = self.sent
            self.sent += 1
            frame = {"id": str(n), "type": "subscribe", "payload": {
                "query": SYNC_SUBSCRIPTION,
                "variables": {"query": QUERY, "params": [n % shapes], "cursor": None},
            }}
            await self._conns[n % len(self._conns)].send(json.dumps(frame))
        while self.up_to_date + self.errors < target:
            if time.monotonic() - started > timeout_s:
                return None
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def close(self) -> None:
        for ws in self._conns:
            await ws.close()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def register(ws_url: str, pid: int, args: argparse.Namespace, row: Row,
                   snapshot: Path | None = None) -> tuple[float, float]:
    """Warm up, then `row.subscriptions` subscriptions; (RSS kB before, after). With
    `snapshot`, SIGUSR1 the traced serve around them (files `snapshot`.0 and .1)."""
    clients = LightClients()
    await clients.open(ws_url, args.connections)
    # Every connection with one subscription: what is left is what the rest cost.
    await clients.subscribe(args.connections, row.shapes, args.window, args.timeout)
    await asyncio.sleep(SETTLE_S)
    if snapshot is not None:
        await take(pid, snapshot, 0)
    before = rss_kb(pid)
    row.up_s = await clients.subscribe(row.subscriptions, row.shapes, args.window, args.timeout)
    await asyncio.sleep(SETTLE_S)
    after = rss_kb(pid)
    if snapshot is not None:
        await take(pid, snapshot, 1)
    row.errors, row.error_kinds = clients.errors, clients.error_kinds
    await clients.close()
    return before, after


async def take(pid: int, snapshot: Path, n: int) -> None:
    """Ask the traced serve for a snapshot and wait until it is written."""
    os.kill(pid, signal.SIGUSR1)
    while not snapshot.exists():
        await asyncio.sleep(0.2)
    snapshot.rename(snapshot.with_suffix(f".{n}"))


def allocators(before: Path, after: Path, root: Path, top: int,
               subscriptions: int) -> tuple[float, list[tuple[str, float, float]],
                                            list[tuple[str, float, float]]]:
    """Bytes per subscription, and the top allocators (name, B/sub, blocks/sub) by the
    allocating line and by pgsift's own innermost line."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(ignore)
    by_line = [(f"{short(s.traceback[0].filename, root)}:{s.traceback[0].lineno}",
                s.size_diff / subscriptions, s.count_diff / subscriptions)
               for s in new.compare_to(old, "lineno")[:top]]
    ours: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for sign, snap in ((1, new), (-1, old)):
        for stat in snap.statistics("traceback"):
            frame = next((f for f in reversed(stat.traceback)
                          if f.filename.startswith(str(root)) and "/.venv/" not in f.filename),
                         None)
            where = "(no pgsift frame)" if frame is None else (
                f"{short(frame.filename, root)}:{frame.lineno}")
            ours[where] += sign * stat.size
            blocks[where] += sign * stat.count
    by_ours = [(where, size / subscriptions, blocks[where] / subscriptions)
               for where, size in ours.most_common(top)]
    total = sum(s.size_diff for s in new.compare_to(old, "filename"))
    return total / subscriptions, by_line, by_ours


def short(filename: str, root: Path) -> str:
    if filename.startswith(str(root)):
        return filename[len(str(root)) + 1:]
    marker = "site-packages/"
    if marker in filename:
        return filename.split(marker, 1)[1]
    return "/".join(filename.split("/")[-2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--shared-shapes", type=int, default=100)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--traced", type=int, default=5000)
    parser.add_argument("--traced-window", type=int, default=100)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--rows", default="own,shared,traced",
                        help="which of the three rows to measure")
    parser.add_argument("--compare", action="append", default=[],
                        help="another checkout's venv Python, measured the same way")
    args = parser.parse_args()
    pythons = [Path(os.path.abspath(p)) for p in (sys.executable, *args.compare)]
    rows: list[Row] = []
    tables: list[str] = []
    buckets = args.subscriptions + args.connections
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server, \
            tempfile.TemporaryDirectory() as folder:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET max_connections = 300")
        postgres.restart()
        url = setup_database(postgres.url, buckets)
        gateway_url = role_url(url, "gateway")
        with capture(url, redis_server.url):
            for python in pythons:
                checkout = python.parents[2]
                program = [str(python.with_name("pgsift"))]
                wanted = args.rows.split(",")
                for name, shapes in (("own shapes", buckets),
                                     (f"{args.shared_shapes} shapes", args.shared_shapes)):
                    if ("own" if shapes == buckets else "shared") not in wanted:
                        continue
                    row = Row(checkout.name, name, args.subscriptions, shapes)
                    with serve(gateway_url, redis_server.url, program) as (ws_url, pid):
                        print(f"{checkout.name}: {name}: serve pid {pid}", flush=True)
                        before, after = asyncio.run(register(ws_url, pid, args, row))
                    row.rss_kb_per_sub = (after - before) / args.subscriptions
                    rows.append(row)
                    print_rows(rows[-1:])
                if "traced" not in wanted:
                    continue
                snapshot = Path(folder) / "snapshot"
                traced = Row(checkout.name, "traced", args.traced, buckets)
                env = {"PGSIFT_BENCH_SNAPSHOT": str(snapshot),
                       "PGSIFT_BENCH_TRACE_FRAMES": str(args.frames)}
                with serve(gateway_url, redis_server.url, [str(python), str(TRACED)],
                           env) as (ws_url, pid):
                    # Tracing slows serve down: fewer at a time, so none waits too long.
                    slow = argparse.Namespace(**{**vars(args), "window": args.traced_window})
                    asyncio.run(register(ws_url, pid, slow, traced, snapshot))
                per_sub, by_line, by_ours = allocators(
                    snapshot.with_suffix(".0"), snapshot.with_suffix(".1"), checkout,
                    args.top, args.traced)
                traced.traced_b_per_sub = per_sub
                rows.append(traced)
                print_rows(rows[-1:])
                tables.append(allocator_table(checkout.name, args.traced, by_line, by_ours))
    print()
    print_rows(rows, header=True)
    for table in tables:
        print(table)


HEADER = (f"{'checkout':16} {'subscriptions of':18} {'subs':>7} {'shapes':>7} {'up s':>7}"
          f" {'subs/s':>7} {'RSS kB/sub':>10} {'traced B/sub':>12} {'errors':>6}")


def print_rows(rows: list[Row], *, header: bool = False) -> None:
    if header:
        print(HEADER)
        print("-" * len(HEADER))
    for r in rows:
        rate = None if r.up_s is None else r.subscriptions / r.up_s
        print(f"{r.checkout[:16]:16} {r.name:18} {r.subscriptions:>7} {r.shapes:>7}"
              f" {fmt(r.up_s, '.1f'):>7} {fmt(rate, '.0f'):>7}"
              f" {fmt(r.rss_kb_per_sub, '.2f'):>10} {fmt(r.traced_b_per_sub, '.0f'):>12}"
              f" {r.errors:>6}", flush=True)
        for kind, n in r.error_kinds.most_common(2):
            print(f"    {n} x {kind}")


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def allocator_table(checkout: str, subscriptions: int, by_line: list[tuple[str, float, float]],
                    by_ours: list[tuple[str, float, float]]) -> str:
    lines = [f"\n{checkout}: Python memory of {subscriptions} more subscriptions (tracemalloc)"]
    for title, stats in (("allocated at", by_line), ("pgsift's innermost line", by_ours)):
        lines.append(f"  {'by ' + title:60} {'B/sub':>8} {'blocks/sub':>10}")
        lines += [f"  {where[-60:]:60} {size:>8.0f} {count:>10.1f}"
                  for where, size, count in stats]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
