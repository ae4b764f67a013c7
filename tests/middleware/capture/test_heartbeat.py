"""Capture's heartbeat and health: fresh while it captures (idle or not), stale when it cannot,
and a full Redis waited out without losing a transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from pgsift.middleware.embedded.ports import free_port
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.heartbeat import EVERY_S
from tests.middleware.capture.processes import (
    CaptureProcess,
    capturing,
    feed,
    heartbeat,
    redis_full,
    wait_for,
)

STALE_AFTER_S = 3.0
WRITES_WHILE_FULL = 20


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        yield conn


def health(port: int) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    return response.status_code, json.loads(response.text)


def heartbeat_age(redis_url: str, database: str) -> float:
    beat = heartbeat(redis_url, database).heartbeat
    return float("inf") if beat is None else beat.age_s


def commit(db: psycopg.Connection[tuple[Any, ...]], row_id: int) -> int:
    """Insert one row in a transaction of its own; the transaction's 32-bit xid (as in the feed)."""
    with db.transaction():
        db.execute("INSERT INTO t VALUES (%s, 'x')", [row_id])
        row = db.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0]) % 2**32


def test_an_idle_database_has_a_fresh_heartbeat_and_its_slot_moves_on(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    database = keys.database_of(database_url)
    with capturing(database_url, redis_url):
        wait_for(lambda: heartbeat(redis_url, database).heartbeat is not None, "a heartbeat")
        first = heartbeat(redis_url, database).heartbeat
        assert first is not None

        def moved_on() -> bool:
            beat = heartbeat(redis_url, database).heartbeat
            return beat is not None and beat.confirmed_lsn > first.confirmed_lsn

        # Nothing is committed, yet the heartbeat is rewritten and the slot confirmed further.
        wait_for(moved_on, "the heartbeat's position to advance without any transaction")
        wait_for(lambda: heartbeat_age(redis_url, database) < EVERY_S * 3, "a recent heartbeat")
        slot = db.execute(
            "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint FROM pg_replication_slots"
            " WHERE database = current_database()"
        ).fetchone()
        assert slot is not None and int(slot[0]) >= first.confirmed_lsn
        assert feed(redis_url, database) == []  # heartbeats are not feed entries


def test_capture_waits_out_a_full_redis_and_loses_nothing(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    database = keys.database_of(database_url)
    port = free_port()
    settings = {"capture_health_port": str(port), "feed_stale_after_s": str(STALE_AFTER_S)}
    with capturing(database_url, redis_url, **settings) as capture:
        xids = [commit(db, 0)]
        wait_for(lambda: len(feed(redis_url, database)) == 1, "the first entry")
        wait_for(lambda: health(port)[0] == 200, "capture healthy")
        assert "pgsift_capture_heartbeat_age_seconds" in httpx.get(
            f"http://127.0.0.1:{port}/metrics", timeout=10).text

        with redis_full(redis_url):
            xids += [commit(db, row_id) for row_id in range(1, WRITES_WHILE_FULL + 1)]
            wait_for(lambda: "Redis is out of memory" in capture.log, "the out-of-memory warning")
            wait_for(lambda: health(port)[0] == 503, "capture reporting itself unhealthy")
            status, report = health(port)
            assert status == 503 and "out of memory" in report["reason"], report
            wait_for(lambda: heartbeat_age(redis_url, database) > STALE_AFTER_S,
                     "the heartbeat to go stale")
            assert capture.running(), capture.log
            xids += [commit(db, WRITES_WHILE_FULL + 1)]

        wait_for(lambda: len(feed(redis_url, database)) >= len(xids), "every transaction stored")
        assert [entry.xid for entry in feed(redis_url, database)] == xids  # each once, in order
        wait_for(lambda: health(port)[0] == 200, "capture healthy again")
        assert "Traceback" not in capture.log


def test_a_standby_is_healthy_and_says_so(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    port = free_port()
    with capturing(database_url, redis_url):
        standby = CaptureProcess(
            database_url, redis_url, "--all", "--health-port", str(port)
        ).start()
        try:
            wait_for(lambda: "standby: capture lock held by" in standby.log, "the standby")
            wait_for(lambda: _answers(port), "the standby's health listener")
            status, report = health(port)
            assert (status, report["status"]) == (200, "standby"), report
        finally:
            standby.cleanup()


def _answers(port: int) -> bool:
    try:
        health(port)
    except httpx.HTTPError:
        return False
    return True
