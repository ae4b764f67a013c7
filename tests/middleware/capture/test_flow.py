"""Committed changes flow from Postgres through `pgsift capture` into the feed, typed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsift.middleware.feed import keys
from pgsift.subscriptions.wire import untyped_json
from tests.middleware.capture.processes import CaptureProcess, feed, run_cli, wait_for

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE items (
    id bigint PRIMARY KEY, i2 int2, i4 int4, n numeric, f4 float4, f8 float8, b bool,
    t text, vc varchar(10), c char(3), u uuid, d date, tm time, ts timestamp,
    tstz timestamptz, iv interval, j json, jb jsonb, by bytea, m mood, p positive,
    ia int4[], ma mood[], ta text[], big text
);
CREATE TABLE nopk (a int, b text);
CREATE TABLE untracked (id int);
"""
ROW = """
INSERT INTO items VALUES (
    1, -2, 2147483647, 12345678901234567890.123456789, 1.5, 'NaN', true,
    'tab	and "quotes" and ünïcode', 'short', 'ab', '6e7f3c7e-8f4a-4c45-9d1f-0b1a2c3d4e5f',
    '2024-02-29', '23:59:59.999999', '1999-12-31 23:59:59.123456',
    '2024-05-01 12:30:00+02', '1 year 2 mons 3 days 04:05:06.7', '{"a": [1, 2.5]}',
    '{"b": {"c": null}}', '\\x00ff10', 'happy', 7, '{1,NULL,3}', '{sad,happy}',
    '{"x y","",NULL}', repeat('toasted ', 20000)
)
"""
# A killed capture's lock expires after this; the next one takes over then.
FAST_LOCK = {"PGSIFT_CAPTURE_LOCK_TTL_S": "1"}


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(database_url, autocommit=True, options="-c TimeZone=UTC") as conn:
        conn.execute(SCHEMA)
        yield conn


@pytest.fixture
def capture(
    database_url: str, redis_url: str, db: psycopg.Connection[tuple[Any, ...]]
) -> Iterator[CaptureProcess]:
    process = CaptureProcess(
        database_url, redis_url, "--tables", "items,nopk", "--setup",
        env={"PGSIFT_CAPTURE_MAX_CHANGES_PER_ENTRY": "3", **FAST_LOCK},
    ).start()
    wait_for(lambda: slot_active(db), "capture to start streaming")
    yield process
    if process.running():
        assert process.stop() == 0, process.log
    process.cleanup()


def slot_active(db: psycopg.Connection[tuple[Any, ...]]) -> bool:
    row = db.execute(
        "SELECT active FROM pg_replication_slots WHERE slot_name = 'pgsift'"
    ).fetchone()
    return bool(row and row[0])


def test_every_operation_flows_with_typed_values(
    db: psycopg.Connection[tuple[Any, ...]], capture: CaptureProcess, redis_url: str,
    database_url: str,
) -> None:
    dbname = keys.database_of(database_url)
    db.execute(ROW)
    (expected,) = db.execute("SELECT * FROM items").fetchall()
    columns = [c.name for c in db.execute("SELECT * FROM items LIMIT 0").description or []]
    oracle = dict(zip(columns, expected, strict=True))
    # psycopg 3 returns an array of an unregistered enum as text; pgsift as a list.
    oracle["ma"] = ["sad", "happy"]
    # The big text stays TOASTed and unchanged: filled from the old row.
    db.execute("UPDATE items SET t = 'changed' WHERE id = 1")
    with db.transaction():
        db.execute("INSERT INTO nopk VALUES (1, 'x'), (2, NULL)")
        db.execute("UPDATE nopk SET b = 'y' WHERE a = 2")
        db.execute("INSERT INTO untracked VALUES (1)")
    db.execute("INSERT INTO untracked VALUES (2)")  # not published: no entry
    db.execute("DELETE FROM items WHERE id = 1")
    db.execute("TRUNCATE nopk")
    wait_for(lambda: len(feed(redis_url, dbname)) >= 5, "five transactions in the feed")
    entries = feed(redis_url, dbname)
    assert [len(e.changes) for e in entries] == [1, 1, 3, 1, 1]
    assert all(e.last and e.chunk == 0 for e in entries)
    lsns = [e.lsn for e in entries]
    assert lsns == sorted(lsns) and len(set(lsns)) == 5
    insert, update, multi, delete, truncate = (e.changes for e in entries)

    assert insert[0].op == "insert" and insert[0].table == "public.items"
    assert insert[0].key == {"id": 1} and insert[0].old is None
    new = insert[0].new
    assert new is not None
    for name, value in oracle.items():
        assert type(new[name]) is type(value), name
        assert untyped_json(new[name]) == untyped_json(value), name
    assert new["m"] == "happy" and new["ma"] == ["sad", "happy"] and new["p"] == 7

    change = update[0]
    assert change.op == "update" and change.old is not None and change.new is not None
    assert change.old["t"] == oracle["t"] and change.new["t"] == "changed"
    assert change.new["big"] == oracle["big"]

    assert [(c.op, c.key) for c in multi] == [
        ("insert", {"a": 1, "b": "x"}), ("insert", {"a": 2, "b": None}),
        ("update", {"a": 2, "b": "y"}),
    ]
    assert multi[2].old == {"a": 2, "b": None}
    assert len({e.xid for e in entries}) == 5

    assert delete[0].op == "delete" and delete[0].key == {"id": 1} and delete[0].new is None
    assert delete[0].old is not None and delete[0].old["t"] == "changed"
    assert truncate[0].op == "truncate" and truncate[0].table == "public.nopk"
    assert truncate[0].key is None and truncate[0].new is None and truncate[0].old is None

    tail = run_cli("feed", "tail", "--redis-url", redis_url, "--database-url", database_url)
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["id"] for line in lines] == [e.id for e in entries]
    first = lines[0]
    assert set(first) == {"id", "lsn", "xid", "commit_time", "changes"}
    assert first["lsn"] == f"{entries[0].lsn >> 32:X}/{entries[0].lsn & 0xFFFFFFFF:X}"
    assert first["commit_time"].endswith("+00:00")
    row = first["changes"][0]
    assert set(row) == {"table", "op", "key", "new", "old"} and row["old"] is None
    assert row["new"]["n"] == "12345678901234567890.123456789"
    assert row["new"]["f8"] == "NaN" and row["new"]["i4"] == 2147483647
    assert row["new"]["by"] == "\\x00ff10" and row["new"]["tstz"] == "2024-05-01T10:30:00+00:00"
    after = run_cli("feed", "tail", "--redis-url", redis_url, "--database", dbname,
                    "--from", entries[3].id)
    assert [json.loads(line)["id"] for line in after.stdout.splitlines()] == [entries[4].id]


def test_the_slot_advances_past_transactions_with_nothing_tracked(
    db: psycopg.Connection[tuple[Any, ...]], capture: CaptureProcess
) -> None:
    db.execute("INSERT INTO items (id) VALUES (1)")
    for value in range(20):
        db.execute("INSERT INTO untracked VALUES (%s)", [value])
    (position,) = db.execute("SELECT pg_current_wal_lsn()").fetchone() or (None,)

    def confirmed_past() -> bool:
        row = db.execute(
            "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = 'pgsift'",
            [position],
        ).fetchone()
        return bool(row and row[0])

    wait_for(confirmed_past, "the slot to confirm past the untracked writes")


def test_a_big_transaction_is_split_into_chunks(
    db: psycopg.Connection[tuple[Any, ...]], capture: CaptureProcess, redis_url: str,
    database_url: str,
) -> None:
    dbname = keys.database_of(database_url)
    db.execute("INSERT INTO nopk SELECT g, 'r' || g FROM generate_series(1, 10) g")
    db.execute("INSERT INTO nopk SELECT g, 'r' || g FROM generate_series(11, 13) g")
    wait_for(lambda: len(feed(redis_url, dbname)) >= 5, "the chunks in the feed")
    entries = feed(redis_url, dbname)
    big, small = entries[:4], entries[4:]
    assert [e.id for e in big] == [f"{big[0].lsn}-{i}" for i in range(4)]
    assert [len(e.changes) for e in big] == [3, 3, 3, 1]
    assert [e.last for e in big] == [False, False, False, True]
    assert len({(e.xid, e.commit_time) for e in big}) == 1
    assert [c.key for e in big for c in e.changes] == [{"a": i, "b": f"r{i}"} for i in range(1, 11)]
    # Exactly a chunk's worth is one entry, not a full one plus an empty one.
    assert [(e.chunk, e.last, len(e.changes)) for e in small] == [(0, True, 3)]


def test_schema_changes_are_flagged_once_across_restarts(
    db: psycopg.Connection[tuple[Any, ...]], capture: CaptureProcess, redis_url: str,
    database_url: str,
) -> None:
    dbname = keys.database_of(database_url)
    db.execute("INSERT INTO nopk VALUES (1, 'a')")
    db.execute("ALTER TABLE nopk ADD COLUMN c int DEFAULT 5")
    db.execute("INSERT INTO nopk VALUES (2, 'b', 6)")
    wait_for(lambda: len(feed(redis_url, dbname)) >= 2, "two entries")
    capture.kill()
    restarted = CaptureProcess(
        database_url, redis_url, "--tables", "items,nopk", env=FAST_LOCK
    ).start()
    try:
        wait_for(lambda: slot_active(db), "the restarted capture")
        db.execute("INSERT INTO nopk VALUES (3, 'c', 7)")
        wait_for(lambda: len(feed(redis_url, dbname)) >= 3, "the third entry")
    finally:
        assert restarted.stop() == 0, restarted.log
        restarted.cleanup()
    entries = feed(redis_url, dbname)
    assert [e.schema_changes for e in entries] == [(), ("public.nopk",), ()]
    assert entries[1].changes[0].new == {"a": 2, "b": "b", "c": 6}
    assert entries[2].changes[0].key == {"a": 3, "b": "c", "c": 7}


def test_capture_refuses_an_unready_database(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    result = run_cli("capture", "--database-url", database_url, "--redis-url", redis_url,
                     "--tables", "items")
    assert result.returncode == 2
    assert "the database is not ready for capture" in result.stderr
    assert "publication pgsift does not exist" in result.stderr
    assert "replication slot pgsift does not exist" in result.stderr
    assert 'fix: ALTER TABLE "public"."items" REPLICA IDENTITY FULL;' in result.stderr
    missing = run_cli("capture", "--database-url", database_url, "--redis-url", redis_url)
    assert missing.returncode == 2 and "--tables a,b) or pass --all" in missing.stderr


def test_a_changed_chunk_size_never_recuts_stored_transactions(
    db: psycopg.Connection[tuple[Any, ...]], capture: CaptureProcess, redis_url: str,
    database_url: str,
) -> None:
    dbname = keys.database_of(database_url)
    # A second slot from before the transaction: reading it re-sends what is stored,
    # as a slot does after a crash.
    db.execute("SELECT pg_create_logical_replication_slot('second', 'pgoutput')")
    db.execute("INSERT INTO nopk SELECT g, 'a' FROM generate_series(1, 10) g")
    wait_for(lambda: len(feed(redis_url, dbname)) >= 4, "the first transaction")
    assert capture.stop() == 0, capture.log
    second = CaptureProcess(
        database_url, redis_url, "--tables", "items,nopk", "--slot", "second",
        env={"PGSIFT_CAPTURE_MAX_CHANGES_PER_ENTRY": "2", **FAST_LOCK},
    ).start()
    try:
        wait_for(lambda: "capturing" in second.log, "the second capture")
        db.execute("INSERT INTO nopk SELECT g, 'b' FROM generate_series(1, 5) g")
        wait_for(lambda: len(feed(redis_url, dbname)) >= 7, "the second transaction")
        assert second.stop() == 0, second.log
        assert "re-sent ones are cut so again" in second.log
    finally:
        second.cleanup()
    entries = feed(redis_url, dbname)
    assert [(e.chunk, len(e.changes)) for e in entries] == [
        (0, 3), (1, 3), (2, 3), (3, 1), (0, 2), (1, 2), (2, 1),
    ]


def test_settings_come_from_pgsift_toml_and_the_environment(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "pgsift.toml"
    config.write_text(
        f'database_url = "{database_url}"\n[capture]\ntables = ["items"]\nslot = "from_file"\n'
    )
    result = run_cli("capture", "--config", str(config), env={"PGSIFT_REDIS_URL": redis_url})
    assert result.returncode == 2
    assert "replication slot from_file does not exist" in result.stderr
    assert 'ALTER TABLE "public"."items" REPLICA IDENTITY FULL;' in result.stderr
    assert "nopk" not in result.stderr


def test_timestamps_arrive_in_utc_whatever_the_database_time_zone(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    """Capture asks its replication session for UTC; the instant must not move."""
    dbname = keys.database_of(database_url)
    db.execute(f"ALTER DATABASE {dbname} SET TimeZone = 'Asia/Kolkata'")
    process = CaptureProcess(database_url, redis_url, "--tables", "items", "--setup").start()
    try:
        wait_for(lambda: slot_active(db), "capture to start streaming")
        db.execute("INSERT INTO items (id, tstz) VALUES (1, '2024-05-01 12:30:00+02')")
        wait_for(lambda: len(feed(redis_url, dbname)) >= 1, "the insert in the feed")
    finally:
        process.stop()
        process.cleanup()
    (entry,) = feed(redis_url, dbname)
    (change,) = entry.changes
    assert change.new is not None
    assert change.new["tstz"] == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert change.new["tstz"].tzinfo is UTC
