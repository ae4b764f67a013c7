"""End-to-end sync benchmark: commit-to-client latency and Postgres queries, vs poll-and-diff.

    .venv/bin/python bench/e2e/run.py [--subscriptions 1000] [--connections 50]
                                      [--tps 1000] [--seconds 30] [--poll-ms 100]

Starts a throwaway Postgres (with pg_stat_statements) and Redis, `pgsift capture`
and `pgsift serve` as subprocesses, and a writer process committing ~tps
single-row transactions (updates, moves between shapes, inserts, deletes).
Phase 1: `subscriptions` sync subscriptions over `connections` websockets.
Phase 2 (baseline, same run, same load): every subscription's query re-run every
poll-ms and diffed against its previous result, as polling live-query systems do.
Latency is clock_timestamp() written in the row -> the client applying it.
Queries are counted by pg_stat_statements per role (gateway vs poller).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.gateway.client import LocalCopy, SyncConnection, key_of

PGSIFT = Path(sys.executable).with_name("pgsift")
QUERY = "SELECT id, bucket, value, ts FROM items WHERE bucket = $1"
POLL_SQL = "SELECT id, bucket, value, ts FROM items WHERE bucket = %s"
ROWS_PER_BUCKET = 5


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    queries: int = 0
    changes: int = 0
    duplicates: int = 0
    mismatched: int = 0
    refetches: int = 0
    seconds: float = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--poll-ms", type=float, default=100.0)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server:
        admin_url = postgres.url
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            admin.execute("ALTER SYSTEM SET max_connections = 300")
            # The embedded server turns synchronous_commit off; then WAL reaches the
            # walsender (and capture) only at the WAL writer's next round (200 ms).
            admin.execute("ALTER SYSTEM SET synchronous_commit = on")
        postgres.restart()
        url = setup_database(postgres.url, args.subscriptions)
        results = []
        with capture(url, redis_server.url):
            with serve(role_url(url, "gateway"), redis_server.url) as ws_url:
                results.append(run_phase(args, url, lambda: sync_clients(args, ws_url, url)))
            if not args.skip_baseline:
                poll_url = role_url(url, "poller")
                results.append(run_phase(args, url, lambda: poll_clients(args, poll_url, url)))
    print_table(args, results)


def role_url(url: str, role: str) -> str:
    return str(psycopg.conninfo.make_conninfo(url, user=role, password=role))


def setup_database(admin_url: str, subscriptions: int) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    url = str(psycopg.conninfo.make_conninfo(admin_url, dbname="bench"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, bucket int NOT NULL, value bigint NOT NULL,"
            " ts timestamptz NOT NULL DEFAULT clock_timestamp(), payload text)"
        )
        conn.execute(
            "INSERT INTO items (id, bucket, value, payload) SELECT i, i %% %s, 0, repeat('x', 40)"
            " FROM generate_series(1, %s) i",
            [subscriptions, subscriptions * ROWS_PER_BUCKET],
        )
        for role in ("gateway", "poller"):
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}'")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
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
        env={**os.environ, "PGSIFT_AUTH_ANONYMOUS": "true", "PGSIFT_GATEWAY_SEND_QUEUE": "100000",
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


def writer(url: str, tps: int, seconds: float, buckets: int, seed: int) -> None:
    """Commit ~tps single-statement transactions for `seconds` (its own process)."""
    rng = random.Random(seed)
    next_id = buckets * ROWS_PER_BUCKET * 10 + seed * 10_000_000
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM items").fetchall()]
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            ahead = n / tps - elapsed
            if ahead > 0:
                time.sleep(ahead)
            n += 1
            kind = rng.random()
            if kind < 0.7 or len(ids) < 10:
                conn.execute(
                    "UPDATE items SET value = value + 1, ts = clock_timestamp() WHERE id = %s",
                    [rng.choice(ids)],
                )
            elif kind < 0.8:
                conn.execute(
                    "UPDATE items SET bucket = %s, ts = clock_timestamp() WHERE id = %s",
                    [rng.randrange(buckets), rng.choice(ids)],
                )
            elif kind < 0.9:
                next_id += 1
                ids.append(next_id)
                conn.execute(
                    "INSERT INTO items (id, bucket, value, payload) VALUES (%s, %s, 0, 'new')",
                    [next_id, rng.randrange(buckets)],
                )
            else:
                victim = ids.pop(rng.randrange(len(ids)))
                conn.execute("DELETE FROM items WHERE id = %s", [victim])


def run_phase(args: argparse.Namespace, url: str, clients: Any) -> Result:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    result: Result = asyncio.run(clients())
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s"
            " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname IN ('gateway', 'poller')"
        ).fetchone()
        result.queries = int(row[0]) if row else 0
    return result


def start_writer(args: argparse.Namespace, url: str) -> multiprocessing.Process:
    process = multiprocessing.Process(
        target=writer, args=(url, args.tps, args.seconds, args.subscriptions, random.randrange(99))
    )
    process.start()
    return process


async def sync_clients(args: argparse.Namespace, ws_url: str, url: str) -> Result:
    result = Result("pgsift sync")
    copies: dict[int, LocalCopy] = {}
    seen: dict[int, set[tuple[str, Any, Any, Any]]] = {}
    measuring = False

    async def follow(conn: SyncConnection, bucket: int) -> None:
        copy = copies[bucket] = LocalCopy()
        delivered = seen[bucket] = set()
        async for message in conn.sync(QUERY, [bucket]):
            now = time.time()
            if message["mustRefetch"]:
                result.refetches += 1
            if measuring and message["upToDate"]:
                for change in message["changes"]:
                    row = change["row"]
                    if row is None:
                        continue
                    result.changes += 1
                    token = (key_of(change["key"]), row["value"], row["bucket"], row["ts"])
                    if token in delivered:
                        result.duplicates += 1
                    delivered.add(token)
                    written = datetime.fromisoformat(row["ts"]).timestamp()
                    result.latencies_ms.append((now - written) * 1000)
            copy.apply(message)

    conns = [await SyncConnection.connect(ws_url) for _ in range(args.connections)]
    tasks = [
        asyncio.create_task(follow(conns[b % args.connections], b))
        for b in range(args.subscriptions)
    ]
    while len(copies) < args.subscriptions or not all(c.up_to_date for c in copies.values()):
        await asyncio.sleep(0.1)
    measuring = True
    started = time.monotonic()
    process = start_writer(args, url)
    while process.is_alive():
        await asyncio.sleep(0.2)
    result.seconds = time.monotonic() - started
    await asyncio.sleep(2.0)  # let the tail drain
    result.mismatched = await mismatches(url, {b: c.rows for b, c in copies.items()})
    for task in tasks:
        task.cancel()
    for conn in conns:
        await conn.close()
    return result


async def poll_clients(args: argparse.Namespace, url: str, oracle_url: str) -> Result:
    result = Result(f"poll-and-diff every {args.poll_ms:g} ms")
    interval = args.poll_ms / 1000
    stop = asyncio.Event()
    copies: dict[int, dict[str, dict[str, Any]]] = {}
    pool_size = min(args.connections, 40)
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(pool_size)]
    locks = [asyncio.Lock() for _ in conns]

    async def poll(bucket: int) -> None:
        conn, lock = conns[bucket % pool_size], locks[bucket % pool_size]
        previous: dict[str, dict[str, Any]] | None = None
        while not stop.is_set():
            tick = time.monotonic()
            async with lock:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(POLL_SQL, [bucket])
                rows = await cursor.fetchall()
            now = time.time()
            current = {key_of({"id": r["id"]}): r for r in rows}
            if previous is not None:
                for key, row in current.items():
                    if previous.get(key) != row:
                        result.changes += 1
                        result.latencies_ms.append((now - row["ts"].timestamp()) * 1000)
            previous = copies[bucket] = current
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))

    tasks = [asyncio.create_task(poll(b)) for b in range(args.subscriptions)]
    while len(copies) < args.subscriptions:
        await asyncio.sleep(0.1)
    started = time.monotonic()
    process = start_writer(args, oracle_url)
    while process.is_alive():
        await asyncio.sleep(0.2)
    result.seconds = time.monotonic() - started
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn in conns:
        await conn.close()
    return result


async def mismatches(url: str, copies: dict[int, dict[str, dict[str, Any]]]) -> int:
    """Subscriptions whose copy differs from Postgres."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute("SELECT id, bucket, value, ts FROM items")
        want: dict[int, dict[str, Any]] = {}
        for row in await cursor.fetchall():
            encoded = {"id": row["id"], "bucket": row["bucket"], "value": row["value"],
                       "ts": row["ts"].isoformat()}
            want.setdefault(row["bucket"], {})[key_of({"id": row["id"]})] = encoded
    return sum(1 for bucket, rows in copies.items() if rows != want.get(bucket, {}))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(args: argparse.Namespace, results: list[Result]) -> None:
    print(
        f"\n{args.subscriptions} subscriptions, {args.connections} connections,"
        f" ~{args.tps} tx/s for {args.seconds:g} s\n"
    )
    header = f"{'':34} {'changes':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'PG queries':>11}"
    print(header)
    print("-" * len(header))
    for r in results:
        lat = r.latencies_ms
        print(
            f"{r.name:34} {r.changes:>9} {percentile(lat, 0.5):>8.1f} {percentile(lat, 0.99):>8.1f}"
            f" {max(lat, default=float('nan')):>8.1f} {r.queries:>11}"
        )
    sync = results[0]
    print(
        f"\npgsift: duplicates {sync.duplicates}, subscriptions not equal to Postgres at the end"
        f" {sync.mismatched}, mustRefetch {sync.refetches}"
        f" (mean latency {statistics.fmean(sync.latencies_ms) if sync.latencies_ms else 0:.1f} ms)"
    )


if __name__ == "__main__":
    main()
