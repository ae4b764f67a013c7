"""End-to-end sync benchmark: commit-to-client latency at several rates, many subscribers,
and poll-and-diff as the baseline.

    .venv/bin/python bench/e2e/run.py [--subscriptions 1000] [--connections 50]
        [--rates 1000,2000,5000] [--seconds 10] [--big-subscriptions 20000]
        [--big-connections 200] [--big-tps 200] [--big-timeout 120] [--poll-ms 100]
        [--skip-baseline] [--skip-big] [--skip-small]

Starts a throwaway Postgres and Redis, `pgsift capture` and `pgsift serve` as
subprocesses (the `pgsift` next to this Python: run it with another checkout's
venv to measure that checkout), and writer processes committing single-row
transactions (`workload.py`: updates, moves between buckets, inserts, deletes;
one writer per 1,000 tx/s asked; the rate they really reached is reported).

1. `subscriptions` sync subscriptions (one bucket each) over `connections`
   websockets, then each rate of `--rates` in turn for `--seconds`.
2. `big-subscriptions` over `big-connections` on a fresh `serve`: the time until
   every one is up to date (and `serve`'s CPU seconds until then: "up CPU s"),
   `serve`'s RSS growth per subscription, then `--big-tps` for `--seconds`.
   `--skip-small` runs this phase alone (no phase 1).
3. The baseline at the first rate: every subscription's query re-run every
   poll-ms and diffed against its previous result.
Latency: `clock_timestamp()` written in the row -> the client reading it.
Missing: row versions (and deletes) the writers' RETURNING says a subscription
must see that it had not seen when the phase drained (subscriptions that ended
with an error are counted under errors instead); duplicates: row versions seen
twice. CPU s/1k: `serve`'s user+system seconds during the phase per 1,000 commits.

After the table, for each live phase, where the latency accumulates (`stages.py`):
each stage's largest lag sampled during the phase (Postgres -> walsender ->
capture -> Redis -> serve's feed tailer -> the clients), the CPU of every
process involved per 1,000 commits with the cores that demands at the rate
reached, the machine's busy cores (and what other work on it used), and how
long each process waited, runnable, for a CPU. Everything runs on this one
machine: the writers and the clients (one process, `clients.py`) take their
share of its cores from pgsift's processes, as the CPU table shows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis
from clients import Clients, Row, wait_up_to_date
from psycopg.rows import dict_row
from stages import (
    CORES,
    CPU_HEADER,
    STAGES_HEADER,
    WAIT_HEADER,
    Processes,
    Sampler,
    cpu_line,
    cpu_seconds,
    rss_kb,
    stage_line,
    wait_line,
    walsender_pid,
)
from workload import ROWS_PER_BUCKET, start_writing

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.gateway.client import key_of

PGSIFT = Path(sys.executable).with_name("pgsift")
POLL_SQL = "SELECT id, bucket, value, ts FROM items WHERE bucket = %s"

HEADER = (f"{'':30} {'asked/s':>8} {'reached/s':>9} {'changes':>8} {'p50 ms':>8}"
          f" {'p99 ms':>8} {'max ms':>8} {'missing':>8} {'dup':>5} {'errors':>6}"
          f" {'CPU s/1k':>8} {'all up s':>8} {'up CPU s':>8} {'kB/sub':>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rates", default="1000,2000,5000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--big-subscriptions", type=int, default=20000)
    parser.add_argument("--big-connections", type=int, default=200)
    parser.add_argument("--big-tps", type=float, default=200.0)
    parser.add_argument("--big-timeout", type=float, default=120.0)
    parser.add_argument("--poll-ms", type=float, default=100.0)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    buckets = max(args.subscriptions, 0 if args.skip_big else args.big_subscriptions)
    rows: list[Row] = []
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server, \
            tempfile.TemporaryDirectory() as folder:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET max_connections = 300")
            # The embedded server turns synchronous_commit off; then WAL reaches the
            # walsender (and capture) only at the WAL writer's next round (200 ms).
            admin.execute("ALTER SYSTEM SET synchronous_commit = on")
        postgres.restart()
        url = setup_database(postgres.url, buckets)
        gateway_url = role_url(url, "gateway")
        postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
        with redis.Redis.from_url(redis_server.url) as r:
            redis_pid = int(r.info("server")["process_id"])
        with capture(url, redis_server.url) as capture_pid:
            procs = Processes(0, capture_pid, postmaster, walsender_pid(url), redis_pid)
            if not args.skip_small:
                with serve(gateway_url, redis_server.url) as (ws_url, pid):
                    rows += asyncio.run(live(args, ws_url, url, redis_server.url,
                                             dataclasses.replace(procs, serve=pid),
                                             rates, Path(folder)))
            if not args.skip_big:
                with serve(gateway_url, redis_server.url) as (ws_url, pid):
                    rows.append(asyncio.run(big(args, ws_url, url, redis_server.url,
                                                dataclasses.replace(procs, serve=pid),
                                                Path(folder))))
            if not args.skip_baseline:
                rows.append(asyncio.run(poll(args, role_url(url, "poller"), url, rates[0],
                                             Path(folder))))
    print_table(args, rows)


def role_url(url: str, role: str) -> str:
    return str(psycopg.conninfo.make_conninfo(url, user=role, password=role))


def setup_database(admin_url: str, buckets: int) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    url = str(psycopg.conninfo.make_conninfo(admin_url, dbname="bench"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, bucket int NOT NULL, value bigint NOT NULL,"
            " ts timestamptz NOT NULL DEFAULT clock_timestamp(), payload text)"
        )
        conn.execute("CREATE INDEX ON items (bucket)")
        conn.execute(
            "INSERT INTO items (id, bucket, value, payload) SELECT i, i %% %s, 0, repeat('x', 40)"
            " FROM generate_series(1, %s) i",
            [buckets, buckets * ROWS_PER_BUCKET],
        )
        for role in ("gateway", "poller"):
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}'")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    return url


@contextlib.contextmanager
def capture(url: str, redis_url: str) -> Iterator[int]:
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
        yield process.pid
    finally:
        stop(process)


@contextlib.contextmanager
def serve(url: str, redis_url: str, program: list[str] | None = None,
          env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """`pgsift serve` (or `program`, a command that runs pgsift's CLI) with `env` added."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [*(program or [str(PGSIFT)]), "--log-level", "ERROR", "serve", "--database-url", url,
         "--redis-url", redis_url, "--port", str(port)],
        env={**os.environ, "PGSIFT_AUTH_ANONYMOUS": "true", "PGSIFT_GATEWAY_SEND_QUEUE": "100000",
             "PGSIFT_GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION": "100000", **(env or {})},
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
        yield f"ws://127.0.0.1:{port}/graphql", process.pid
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL for a process too busy to stop within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def sampler(url: str, redis_url: str, ws_url: str) -> Sampler:
    """The stages of the pipeline feeding `serve` at `ws_url`."""
    metrics = ws_url.replace("ws://", "http://").replace("/graphql", "/metrics")
    return Sampler(url, redis_url, metrics, "bench")


async def live(args: argparse.Namespace, ws_url: str, url: str, redis_url: str,
               procs: Processes, rates: list[float], folder: Path) -> list[Row]:
    clients = Clients()
    await clients.start(ws_url, args.subscriptions, args.connections)
    await wait_up_to_date(clients, args.subscriptions, args.big_timeout)
    name = f"{args.subscriptions} subs / {args.connections} conns"
    rows = []
    for tps in rates:
        rows.append(await clients.phase(name, url, procs, sampler(url, redis_url, ws_url), tps,
                                        args.seconds, args.subscriptions, folder))
        print_rows(rows[-1:])
    mismatched = await mismatches(url, {b: c.rows for b, c in clients.copies.items()})
    print(f"{name}: subscriptions not equal to Postgres at the end: {mismatched},"
          f" mustRefetch {clients.refetches}, errors {clients.errors}", flush=True)
    await clients.close()
    return rows


async def big(args: argparse.Namespace, ws_url: str, url: str, redis_url: str,
              procs: Processes, folder: Path) -> Row:
    subscriptions, pid = args.big_subscriptions, procs.serve
    rss = rss_kb(pid)
    clients = Clients()
    cpu = cpu_seconds(pid)
    started = time.monotonic()
    await clients.start(ws_url, subscriptions, args.big_connections)
    took = await wait_up_to_date(clients, subscriptions, args.big_timeout)
    if took is not None:
        took = time.monotonic() - started
        up_cpu: float | None = cpu_seconds(pid) - cpu
    else:
        up_cpu = None
    if took is None:
        print(f"big: {clients.up_to_date()} of {subscriptions} up to date after"
              f" {time.monotonic() - started:.0f} s, {clients.errors} errors:"
              f" {clients.error_kinds.most_common(3)}", flush=True)
    grown = (rss_kb(pid) - rss) / subscriptions
    row = await clients.phase(f"{subscriptions} subs / {args.big_connections} conns", url, procs,
                              sampler(url, redis_url, ws_url), args.big_tps, args.seconds,
                              subscriptions, folder)
    row.up_to_date_s, row.up_cpu_s, row.rss_kb_per_sub = took, up_cpu, grown
    print_rows([row])
    await clients.close()
    return row


async def poll(args: argparse.Namespace, url: str, oracle_url: str, tps: float,
               folder: Path) -> Row:
    latencies: list[float] = []
    interval = args.poll_ms / 1000
    stop = asyncio.Event()
    polled: set[int] = set()
    pool_size = min(args.connections, 40)
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(pool_size)]
    locks = [asyncio.Lock() for _ in conns]

    async def follow(bucket: int) -> None:
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
                        latencies.append((now - row["ts"].timestamp()) * 1000)
            previous = current
            polled.add(bucket)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))

    tasks = [asyncio.create_task(follow(b)) for b in range(args.subscriptions)]
    while len(polled) < args.subscriptions:
        await asyncio.sleep(0.1)
    writing = start_writing(oracle_url, tps, args.seconds, args.subscriptions, folder)
    while not writing.ready():
        await asyncio.sleep(0.2)
    written = writing.get()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn in conns:
        await conn.close()
    return Row(f"poll-and-diff every {args.poll_ms:g} ms", tps,
               written.commits / written.seconds, latencies)


async def mismatches(url: str, copies: dict[int, dict[str, dict[str, Any]]]) -> int:
    """Subscriptions whose copy differs from Postgres."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute("SELECT id, bucket, value, ts FROM items")
        want: dict[int, dict[str, Any]] = {}
        for row in await cursor.fetchall():
            encoded = {"id": str(row["id"]), "bucket": row["bucket"], "value": str(row["value"]),
                       "ts": row["ts"].isoformat()}
            want.setdefault(row["bucket"], {})[key_of({"id": str(row["id"])})] = encoded
    return sum(1 for bucket, rows in copies.items() if rows != want.get(bucket, {}))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shown(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(args: argparse.Namespace, rows: list[Row]) -> None:
    print(f"\n~{args.seconds:g} s per rate; {PGSIFT}\n")
    print_rows(rows, header=True)
    staged = [r for r in rows if r.stages is not None]
    print("\nWhere the latency accumulates (largest value sampled in each phase):\n")
    print(STAGES_HEADER)
    for r in staged:
        assert r.stages is not None
        print(stage_line(r.name, r.asked, r.reached, r.stages, percentile(r.latencies_ms, 0.5),
                         percentile(r.latencies_ms, 0.99)))
    print(f"\nCPU ms per 1,000 commits; cores@rate: the cores the reached rate demands"
          f" (this machine has {CORES}); cores used: CPU / the phase's wall time\n")
    print(CPU_HEADER)
    for r in staged:
        assert r.stages is not None
        print(cpu_line(r.name, r.reached, r.commits, r.stages))
    print("\nRunnable but waiting for a CPU (share of the phase's wall time)\n")
    print(WAIT_HEADER)
    for r in staged:
        assert r.stages is not None
        print(wait_line(r.name, r.reached, r.stages))


def print_rows(rows: list[Row], *, header: bool = False) -> None:
    if header:
        print(HEADER)
        print("-" * len(HEADER))
    for r in rows:
        lat = r.latencies_ms
        print(
            f"{r.name:30} {r.asked:>8.0f} {r.reached:>9.0f} {len(lat):>8}"
            f" {percentile(lat, 0.5):>8.1f} {percentile(lat, 0.99):>8.1f}"
            f" {max(lat, default=float('nan')):>8.1f} {shown(r.missing, 'd'):>8}"
            f" {shown(r.duplicates, 'd'):>5} {r.errors:>6} {shown(r.cpu_per_1k, '.2f'):>8}"
            f" {shown(r.up_to_date_s, '.1f'):>8} {shown(r.up_cpu_s, '.1f'):>8}"
            f" {shown(r.rss_kb_per_sub, '.1f'):>7}",
            flush=True,
        )


if __name__ == "__main__":
    main()
