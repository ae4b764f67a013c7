"""The embedded servers that back `pgsift demo` and these fixtures."""

from __future__ import annotations

import psycopg
import pytest
import redis

from pgsift.middleware.embedded import EmbeddedRedis
from pgsift.middleware.errors import EmbeddedServerError
from tests.conftest import PostgresServer, RedisServer


def test_postgres_is_ready_for_logical_replication(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        slots = conn.execute("SHOW max_replication_slots").fetchone()
        assert slots is not None and int(slots[0]) >= 10


def test_redis_keeps_streams_across_restart(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.xadd("probe", {"v": "1"}, id="5-0")
    if redis_server.embedded is not None:
        redis_server.embedded.restart()
        client = redis.Redis.from_url(redis_url)
    assert client.xrange("probe") == [(b"5-0", {b"v": b"1"})]


def test_postgres_restart_keeps_data(postgres_server: PostgresServer, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int primary key)")
        conn.execute("INSERT INTO t VALUES (1)")
    if postgres_server.embedded is not None:
        postgres_server.embedded.restart()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT id FROM t").fetchall() == [(1,)]



def test_redis_that_cannot_start_leaves_no_process() -> None:
    server = EmbeddedRedis()
    server.binary = "/bin/false"  # exits at once, like a redis-server that fails to start
    with pytest.raises(EmbeddedServerError, match="exited"):
        server.start()
    assert server._process is None
    server.stop()
