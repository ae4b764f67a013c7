"""Capture throughput and memory, next to bare pgoutput readers, in the same run.

Two workloads are committed first (each with fresh slots, so every reader
starts from the same backlog): many single-row transactions, then one big
transaction. Then two bare psycopg2 readers drain their slots, and
`pgsift capture` drains its own into Redis:

* "bare: messages" splits the stream into pgoutput messages and leaves each
  row's values as the bytes Postgres sent (`pgoutput.decode` alone);
* "bare: typed rows" decodes fully, as the issue defines decoding: messages,
  then each row's values as the Python types psycopg 3 returns
  (`RelationCache.to_change`, the code capture uses).

Capture does all of that, then cuts transactions into entries, encodes them,
appends them to Redis (fsync on every write) and confirms the slot. Reported:
rows/s from process start to the last row stored in the feed (capture) or
decoded (the bare readers), and each process's peak RSS.

    .venv/bin/python bench/capture/run.py                 # 200,000 txs + 1,000,000 rows
    .venv/bin/python bench/capture/run.py --single 20000 --big 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass

import psycopg
import psycopg2
import psycopg2.extras
import redis

from pgsift.middleware.capture import pgoutput
from pgsift.middleware.capture.changes import RelationCache
from pgsift.middleware.capture.lookup import CatalogLookup
from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.feed import keys

DATABASE = "bench_capture"
TABLE = "bench_rows"
PUBLICATION = "bench_pub"
CAPTURE_SLOT = "bench_capture"
BARE_SLOT = "bench_bare"
CHUNK = 1000
BARE_MESSAGES = "bare: messages"
BARE_TYPED = "bare: typed rows"
CAPTURE = "pgsift capture -> Redis"
PGSIFT = [sys.executable, "-m", "pgsift.middleware.cli"]


@dataclass(frozen=True)
class Result:
    workload: str
    reader: str
    rows: int
    seconds: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=200_000, help="single-row transactions")
    parser.add_argument("--big", type=int, default=1_000_000, help="rows of the big transaction")
    parser.add_argument("--repeat", type=int, default=1,
                        help="drain each backlog this many times per reader; report the best")
    parser.add_argument("--database-url", help="a superuser URL (default: throwaway server)")
    parser.add_argument("--redis-url", help="default: throwaway server")
    parser.add_argument("--bare-reader", nargs=4, metavar=("URL", "ROWS", "SLOT", "KIND"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_reader:
        url, rows, slot, kind = args.bare_reader
        bare_reader(url, int(rows), slot, typed=kind == "typed")
        return
    results: list[Result] = []
    with servers(args.database_url, args.redis_url) as (server_url, redis_url):
        url = fresh_database(server_url)
        if args.single:
            label = f"{args.single:,} single-row txs"
            results += run_workload(
                url, redis_url, label, args.single, args.single, single_rows, args.repeat
            )
        if args.big:
            label = f"1 tx of {args.big:,} rows"
            entries = math.ceil(args.big / CHUNK)
            results += run_workload(
                url, redis_url, label, args.big, entries, big_transaction, args.repeat
            )
    print_table(results)


@contextmanager
def servers(database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        if database_url is None:
            database_url = stack.enter_context(EmbeddedPostgres()).url
        if redis_url is None:
            redis_url = stack.enter_context(EmbeddedRedis()).url
        yield database_url, redis_url


def fresh_database(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as admin:
        for (slot,) in admin.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", [DATABASE]
        ).fetchall():
            admin.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    url = str(psycopg.conninfo.make_conninfo(server_url, dbname=DATABASE))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, title text, amount numeric,"
            f" at timestamptz DEFAULT now());"
            f" ALTER TABLE {TABLE} REPLICA IDENTITY FULL;"
            f" CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}"
        )
    return url


def single_rows(conn: psycopg.Connection[tuple[object, ...]], count: int) -> None:
    # One COMMIT per row, server-side: the client is not the bottleneck.
    conn.execute(
        f"DO $$ BEGIN FOR i IN 1..{count} LOOP"
        f" INSERT INTO {TABLE} (id, title, amount) VALUES (i, 'row ' || i, i * 1.5);"
        f" COMMIT; END LOOP; END $$"
    )


def big_transaction(conn: psycopg.Connection[tuple[object, ...]], count: int) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (id, title, amount)"
        f" SELECT 10000000 + g, 'row ' || g, g * 1.5 FROM generate_series(1, {count}) g"
    )


def run_workload(
    url: str, redis_url: str, label: str, rows: int, entries: int, workload: object,
    repeat: int,
) -> list[Result]:
    """Commit the workload once; drain it `repeat` times with each reader (own slots)."""
    slots = [
        (f"{CAPTURE_SLOT}_{i}", f"{BARE_SLOT}_{i}", f"{BARE_SLOT}_typed_{i}")
        for i in range(repeat)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLE}")
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = %s", [DATABASE],
        )
        for pair in slots:
            for slot in pair:
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        print(f"{label}: writing ...", file=sys.stderr, flush=True)
        workload(conn, rows)  # type: ignore[operator]
    bare: list[Result] = []
    typed: list[Result] = []
    captured: list[Result] = []
    client = redis.Redis.from_url(redis_url)
    for capture_slot, bare_slot, typed_slot in slots:
        bare.append(bare_drain(url, label, rows, bare_slot, typed=False))
        typed.append(bare_drain(url, label, rows, typed_slot, typed=True))
        print(f"{label}: pgsift capture ...", file=sys.stderr, flush=True)
        client.flushall()
        captured.append(Result(label, CAPTURE, rows,
                               *capture_drain(url, redis_url, entries, client, capture_slot)))
    client.close()
    # Best of the repeats: the machine's other load only ever slows a run down.
    return [min(runs, key=lambda r: r.seconds) for runs in (bare, typed, captured)]


def bare_drain(url: str, label: str, rows: int, slot: str, *, typed: bool) -> Result:
    name = BARE_TYPED if typed else BARE_MESSAGES
    print(f"{label}: {name} ...", file=sys.stderr, flush=True)
    # Every reader is timed from process start (interpreter, imports, connecting).
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, __file__, "--bare-reader", url, str(rows), slot,
         "typed" if typed else "messages"],
        capture_output=True, text=True, check=True,
    )
    seconds = time.monotonic() - started
    return Result(label, name, rows, seconds, json.loads(done.stdout)["peak_rss_mb"])


def capture_drain(
    url: str, redis_url: str, entries: int, client: redis.Redis[bytes], slot: str
) -> tuple[float, float]:
    stream = keys.feed_stream(DATABASE)
    env = {**os.environ, "PGSIFT_CAPTURE_MAX_CHANGES_PER_ENTRY": str(CHUNK)}
    started = time.monotonic()
    process = subprocess.Popen(
        [*PGSIFT, "--log-level", "WARNING", "capture", "--database-url", url,
         "--redis-url", redis_url, "--tables", TABLE, "--slot", slot,
         "--publication", PUBLICATION],
        env=env,
    )
    try:
        while int(client.xlen(stream)) < entries:
            if process.poll() is not None:
                raise SystemExit(f"capture exited with {process.returncode}")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        peak = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait()
    return seconds, peak


def bare_reader(url: str, rows: int, slot: str, *, typed: bool) -> None:
    """Drain `slot` decoding every message (and with `typed`, every row's values)
    as fast as psycopg2 allows; print the result."""
    conn = psycopg2.connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cursor = conn.cursor()
    lookup = CatalogLookup(url)
    relations = RelationCache(lookup.type_name, lookup.primary_key)
    seen = 0
    cursor.start_replication(slot_name=slot, decode=False,
                             options={"proto_version": "1", "publication_names": PUBLICATION})

    def consume(message: psycopg2.extras.ReplicationMessage) -> None:
        nonlocal seen
        decoded = pgoutput.decode(message.payload)
        if isinstance(decoded, pgoutput.Insert):
            if typed:
                relations.to_change(decoded)
            seen += 1
        elif typed and isinstance(decoded, pgoutput.Relation):
            # Only the typed reader needs the catalog (a side connection to Postgres).
            relations.update(decoded)
        elif isinstance(decoded, pgoutput.Commit) and seen >= rows:
            raise psycopg2.extras.StopReplication

    with suppress(psycopg2.extras.StopReplication):
        cursor.consume_stream(consume)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(os.getpid())}))
    lookup.close()
    conn.close()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


def print_table(results: list[Result]) -> None:
    """One line per reader; capture's rate also as a share of each bare reader's."""
    header = (f"{'workload':<28} {'reader':<26} {'rows':>10} {'s':>6} {'rows/s':>10} "
              f"{'peak RSS':>9}  capture's share")
    print(header)
    print("-" * len(header))
    rates = {(r.workload, r.reader): r.rate for r in results}
    for r in results:
        share = ""
        if r.reader == CAPTURE:
            share = ", ".join(
                f"{r.rate / rates[(r.workload, bare)]:.0%} of {bare.removeprefix('bare: ')}"
                for bare in (BARE_MESSAGES, BARE_TYPED)
            )
        print(f"{r.workload:<28} {r.reader:<26} {r.rows:>10,} {r.seconds:>6.1f} "
              f"{r.rate:>10,.0f} {r.peak_rss_mb:>7.0f}MB  {share}")


if __name__ == "__main__":
    main()
