"""A dump plus the feed replayed from its cursor converges to Postgres's SELECT.

With real capture running, and with writes committing before, during and after
the build. Replayed both ways: skipping the transactions the dump's snapshot
already holds (what the cursor is for) and applying everything (idempotence).
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsift.middleware.dumps.read import DumpSnapshot
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.shape import Shape
from pgsift.workers.build import DumpBuilder
from pgsift.workers.build_status import BuildProgress
from pgsift.workers.context import JobContext

PGSIFT = str(Path(sys.executable).parent / "pgsift")
QUERY = "SELECT id, team, title, n FROM items WHERE team = $1 AND n < 900"
WAIT_S = 60.0


@pytest.fixture
def capture(database_url: str, redis_url: str) -> Iterator[None]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, team int, title text, n int)")
        conn.execute("INSERT INTO items SELECT i, mod(i, 3), 'item ' || i, mod(i, 1000) "
                     "FROM generate_series(1, 15000) AS i")
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [PGSIFT, "capture", "--database-url", database_url, "--redis-url", redis_url,
             "--all", "--setup"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.returncode not in (0, -15):
                log.seek(0)
                print(log.read().decode(errors="replace"))


def churn(conn: psycopg.Connection[Any], rng: random.Random, transactions: int) -> None:
    """Random writes, many of them moving rows into or out of the shape."""
    for _ in range(transactions):
        with conn.transaction():
            for _ in range(rng.randint(1, 4)):
                row_id = rng.randint(1, 16000)
                action = rng.random()
                if action < 0.5:
                    conn.execute("UPDATE items SET team = %s, n = %s, title = title || '+' "
                                 "WHERE id = %s", [rng.randint(0, 2), rng.randint(0, 999), row_id])
                elif action < 0.8:
                    conn.execute("INSERT INTO items VALUES (%s, %s, 'new', %s) ON CONFLICT (id) "
                                 "DO UPDATE SET title = 'upserted'",
                                 [row_id, rng.randint(0, 2), rng.randint(0, 999)])
                else:
                    conn.execute("DELETE FROM items WHERE id = %s", [row_id])


def last_xid(conn: psycopg.Connection[Any]) -> int:
    """Commit one more transaction and return its xid (to wait for it in the feed)."""
    with conn.transaction():
        conn.execute("UPDATE items SET title = 'marker' WHERE id = 1")
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0]) & 0xFFFFFFFF


def wait_for_xid(context: JobContext, xid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while not any(entry.xid == xid for entry in feed_after(context, None)):
        assert time.monotonic() < deadline, "capture never delivered the transaction"
        time.sleep(0.1)


def wait_until_capturing(context: JobContext, conn: psycopg.Connection[Any]) -> None:
    """Writes before capture made its slot are never captured: mark until one arrives."""
    deadline = time.monotonic() + WAIT_S
    while context.reader.last_id() is None:
        assert time.monotonic() < deadline, "capture never started"
        last_xid(conn)
        time.sleep(0.2)


def feed_after(context: JobContext, position: str | None) -> list[FeedEntry]:
    entries: list[FeedEntry] = []
    while page := context.reader.read_after(position, count=500):
        entries += page
        position = page[-1].id
    return entries


def replay(shape: Shape, state: dict[Any, dict[str, Any]], entries: list[FeedEntry]) -> None:
    """Apply changes as a client does: upsert or delete by key, per the shape."""
    for entry in entries:
        for change in entry.changes:
            if change.table != "public.items":
                continue
            if change.op == "truncate":
                state.clear()
                continue
            raw = (change.key or change.old or change.new or {})["id"]
            key = shape.wire.mapping({"id": raw})["id"]  # as dump rows are keyed
            if change.op != "delete" and change.new is not None and shape.matches(change.new):
                state[key] = shape.wire.mapping(shape.project(change.new))
            else:
                state.pop(key, None)


@pytest.mark.usefixtures("capture")
def test_dump_and_replay_converge_with_writes_during_the_build(
    context: JobContext, database_url: str
) -> None:
    rng = random.Random(6)
    with psycopg.connect(database_url, autocommit=True) as conn:
        wait_until_capturing(context, conn)
        churn(conn, rng, 30)  # some of these may not be in the feed yet at the build

        def write_meanwhile(progress: BuildProgress) -> None:
            churn(conn, rng, 10)

        shape, layout = context.shape(QUERY, [1])
        builder = DumpBuilder(context, progress_every_s=0.0)
        result = builder.build(shape, layout, write_meanwhile)
        assert result.status == "built"
        churn(conn, rng, 30)
        wait_for_xid(context, last_xid(conn))
        sql, params = shape.to_sql()
        cur = conn.execute(sql, params)
        expected = {row["id"]: row for row in map(shape.wire.values, cur)}

    [info] = context.store.dumps(shape.key)
    dump = DumpSnapshot(context.store, info)
    entries = feed_after(context, info.header.feed_position)
    stamp = dump.cursor.snapshot
    assert stamp is not None
    unseen = [e for e in entries if not stamp.visible(e.xid)]
    assert len(unseen) >= 50  # at least the writes during and after the build

    skipping = {row["id"]: row for row in dump.rows()}
    replay(shape, skipping, unseen)
    assert skipping == expected

    everything = {row["id"]: row for row in dump.rows()}
    replay(shape, everything, entries)
    assert everything == expected
