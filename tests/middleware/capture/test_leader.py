"""One active capture per database: standby takeover, and fencing of a paused leader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgsift.middleware.feed import keys
from tests.middleware.capture.processes import CaptureProcess, feed, wait_for

ENV = {"PGSIFT_CAPTURE_LOCK_TTL_S": "1"}


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        yield conn


def capture(database_url: str, redis_url: str, *extra: str) -> CaptureProcess:
    return CaptureProcess(database_url, redis_url, "--tables", "t", *extra, env=ENV).start()


def ids(redis_url: str, database_url: str) -> list[int]:
    entries = feed(redis_url, keys.database_of(database_url))
    return [c.key["id"] for e in entries for c in e.changes if c.key is not None]


def insert(db: psycopg.Connection[tuple[Any, ...]], *values: int) -> None:
    for value in values:
        db.execute("INSERT INTO t VALUES (%s)", [value])


def test_a_standby_takes_over_when_the_leader_dies(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    leader = capture(database_url, redis_url, "--setup")
    standby: CaptureProcess | None = None
    try:
        wait_for(lambda: "capturing" in leader.log, "the leader to stream")
        standby = capture(database_url, redis_url)
        waiting = standby
        wait_for(lambda: "standby: capture lock held by" in waiting.log, "the standby")
        insert(db, 1, 2)
        wait_for(lambda: ids(redis_url, database_url) == [1, 2], "the leader's entries")
        assert "capturing" not in standby.log
        leader.kill()
        insert(db, 3)
        wait_for(lambda: ids(redis_url, database_url) == [1, 2, 3], "the standby's entry")
        assert "capture lock acquired (fencing token 2)" in standby.log
    finally:
        leader.cleanup()
        if standby is not None:
            assert standby.stop() == 0, standby.log
            standby.cleanup()


def test_a_paused_leader_is_fenced_off(
    db: psycopg.Connection[tuple[Any, ...]], database_url: str, redis_url: str
) -> None:
    old = capture(database_url, redis_url, "--setup")
    new: CaptureProcess | None = None
    try:
        wait_for(lambda: "capturing" in old.log, "the first leader to stream")
        insert(db, 1)
        wait_for(lambda: ids(redis_url, database_url) == [1], "the first entry")
        old.pause()  # a GC pause, a frozen VM: its lock expires
        insert(db, 2, 3)  # reaches the paused leader's socket, not the feed
        new = capture(database_url, redis_url)
        wait_for(lambda: ids(redis_url, database_url) == [1, 2, 3], "the new leader's entries")
        assert "stale capture" in new.log
        old.resume()
        insert(db, 4)
        wait_for(lambda: "back to standby" in old.log, "the old leader to step down")
        wait_for(lambda: ids(redis_url, database_url) == [1, 2, 3, 4], "entry 4")
        assert ids(redis_url, database_url) == [1, 2, 3, 4]
        assert old.running() and "standby" in old.log
    finally:
        old.resume()
        assert old.stop() == 0, old.log
        old.cleanup()
        if new is not None:
            assert new.stop() == 0, new.log
            new.cleanup()
