"""Real servers for the tests, shared by the whole session.

Set PGSIFT_TEST_DATABASE_URL (a superuser on a server with wal_level=logical)
and/or PGSIFT_TEST_REDIS_URL to use existing servers; otherwise throwaway ones
start on random ports in temp directories, exactly as `pgsift demo` does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.embedded.redis_cluster import EmbeddedRedisCluster


@dataclass
class PostgresServer:
    """A server the tests may create databases on; `embedded` allows restarts."""

    url: str
    embedded: EmbeddedPostgres | None

    def url_for(self, database: str) -> str:
        return str(psycopg.conninfo.make_conninfo(self.url, dbname=database))


@dataclass
class RedisServer:
    url: str
    embedded: EmbeddedRedis | None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("PGSIFT_TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url, None)
        return
    with EmbeddedPostgres() as server:
        yield PostgresServer(server.url, server)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    url = os.environ.get("PGSIFT_TEST_REDIS_URL")
    if url:
        yield RedisServer(url, None)
        return
    with EmbeddedRedis() as server:
        yield RedisServer(server.url, server)


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; dropped (with its slots) afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url_for(name)
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        slots = admin.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", [name]
        ).fetchall()
        for slot, pid in slots:
            if pid is not None:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            admin.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The shared Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedRedisCluster]:
    """A throwaway Redis Cluster of three masters, started on first use."""
    with EmbeddedRedisCluster() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: EmbeddedRedisCluster) -> str:
    """The shared Redis Cluster (`redis+cluster://`), emptied before each test."""
    redis_cluster.flush()
    return redis_cluster.url
