"""No loss, no duplicates: capture is `kill -9`-ed again and again under a write load.

A writer commits numbered transactions (some big enough to be split into
chunks) while capture is killed at random moments and restarted, Redis is
restarted once and Postgres once. Afterwards the feed must hold every
transaction Postgres committed exactly once, in commit order, with its xid,
and nothing else. `PGSIFT_SOAK_KILLS=200` runs a longer soak.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.entry import FeedEntry
from tests.conftest import PostgresServer, RedisServer
from tests.middleware.capture.processes import CaptureProcess, feed, wait_for

KILLS = int(os.environ.get("PGSIFT_SOAK_KILLS", "12"))
CHUNK = 7
BIG_EVERY = 9  # every 9th transaction writes BIG_ROWS rows: several chunks
BIG_ROWS = 40
ENV = {"PGSIFT_CAPTURE_LOCK_TTL_S": "1", "PGSIFT_CAPTURE_MAX_CHANGES_PER_ENTRY": str(CHUNK)}


class Writer(threading.Thread):
    """Commits transactions 1, 2, 3, ... one after another until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.attempted = 0
        self.errors = 0

    def run(self) -> None:
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        tx = 0
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url)
                tx += 1
                rows = BIG_ROWS if tx % BIG_EVERY == 0 else 1
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO ledger (tx, r, xid) SELECT %s, g,"
                        " pg_current_xact_id()::text::bigint FROM generate_series(1, %s) g",
                        [tx, rows],
                    )
                self.attempted = tx
                time.sleep(0.002)
            except psycopg.OperationalError:
                # Postgres restarting: whether the last commit made it, the table says.
                self.errors += 1
                conn = None
                self.stop.wait(0.2)
        if conn is not None:
            conn.close()


@pytest.fixture
def ledger(database_url: str) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ledger (tx int, r int, xid bigint, PRIMARY KEY (tx, r))"
        )
    yield database_url


def committed(url: str) -> list[tuple[int, int, int]]:
    """(tx, xid mod 2^32, rows) of every committed transaction, in commit order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tx, min(xid) % 4294967296, count(*) FROM ledger GROUP BY tx ORDER BY tx"
        ).fetchall()
    return [(int(a), int(b), int(c)) for a, b, c in rows]


def transactions(entries: list[FeedEntry]) -> list[tuple[int, int, int]]:
    """(tx, xid, rows) per transaction in the feed, checking its chunks on the way."""
    chunks: dict[int, list[FeedEntry]] = defaultdict(list)
    order: list[int] = []
    for entry in entries:
        if entry.lsn not in chunks:
            order.append(entry.lsn)
        chunks[entry.lsn].append(entry)
    result = []
    for lsn in order:
        parts = chunks[lsn]
        assert [p.chunk for p in parts] == list(range(len(parts))), f"chunks of {lsn}"
        assert [p.last for p in parts] == [False] * (len(parts) - 1) + [True], f"last of {lsn}"
        assert all(len(p.changes) == CHUNK for p in parts[:-1])
        assert len({p.xid for p in parts}) == 1
        keys_ = [c.key for p in parts for c in p.changes]
        txs = {k["tx"] for k in keys_ if k is not None}
        assert len(txs) == 1, f"one writer transaction per feed transaction, got {txs}"
        assert [k["r"] for k in keys_ if k is not None] == list(range(1, len(keys_) + 1))
        result.append((txs.pop(), parts[0].xid, len(keys_)))
    return result


@pytest.mark.slow
def test_kill_minus_nine_loses_and_duplicates_nothing(
    ledger: str, redis_url: str, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    dbname = keys.database_of(ledger)
    first = CaptureProcess(ledger, redis_url, "--tables", "ledger", "--setup", env=ENV).start()
    wait_for(lambda: slot_exists(ledger), "the slot")
    first.kill()
    writer = Writer(ledger)
    writer.start()
    rng = random.Random(os.environ.get("PGSIFT_SOAK_SEED", "7"))
    processes = [first]
    try:
        for round_ in range(KILLS):
            process = CaptureProcess(ledger, redis_url, "--tables", "ledger", env=ENV).start()
            processes.append(process)
            time.sleep(rng.uniform(0.3, 1.5))
            server = {KILLS // 3: redis_server.embedded, 2 * KILLS // 3: postgres_server.embedded}
            embedded = server.get(round_)
            if embedded is not None:
                # Restart a server under a streaming capture: it must ride it out.
                wait_for(lambda: "capturing" in process.log, "capture to stream")  # noqa: B023
                embedded.stop(remove=False)
                time.sleep(1.5)  # longer than the lock's TTL
                embedded.start()
                wait_for(lambda: redis_ready(redis_url), "Redis to load its data")
                seen = len(feed(redis_url, dbname)) + 5
                wait_for(
                    lambda: len(feed(redis_url, dbname)) > seen,  # noqa: B023
                    "capture to recover",
                )
                assert "capture interrupted" in process.log, process.log
            assert process.running(), process.log
            process.kill()
        writer.stop.set()
        writer.join(timeout=60)
        truth = committed(ledger)
        assert len(truth) > 50, "the writer should have committed a load"
        last = CaptureProcess(ledger, redis_url, "--tables", "ledger", env=ENV).start()
        processes.append(last)
        wait_for(
            lambda: any(c.key == {"tx": truth[-1][0], "r": truth[-1][2]}
                        for e in feed(redis_url, dbname)[-3:] for c in e.changes),
            "the last committed transaction in the feed", timeout=120,
        )
        assert last.stop() == 0, last.log
    finally:
        writer.stop.set()
        for process in processes:
            process.cleanup()
    assert transactions(feed(redis_url, dbname)) == truth


def redis_ready(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    except redis.ConnectionError:  # BusyLoadingError too: the AOF is being replayed
        return False
    finally:
        client.close()


def slot_exists(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgsift'"
        ).fetchone() == (1,)
