"""Dumps on a Redis Cluster: enqueued by a bootstrap, built by a worker, served, trimmed.

The database's keys (feed, dumps, leases, locks, popularity) live on a
three-master cluster (`redis+cluster://`); RQ's queues on the plain Redis of
`jobs_redis_url`, since RQ does not run on a cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from rq import Queue

from pgsift.middleware.dumps import keys as dump_keys
from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE
from pgsift.middleware.dumps.leases import claim_for_drop, lease, leased_ids
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.settings import Settings
from pgsift.middleware.wiring import Wiring
from pgsift.workers.context import JobContext
from pgsift.workers.trim import drop_stale_in, trim_feed_in
from tests.middleware.bootstrap.test_http import (
    POLICIES,
    SECRET,
    bootstrap,
    check_complete,
    expected_rows,
)
from tests.middleware.dumps.server import bootstrap_client
from tests.workers.conftest import run_jobs
from tests.workers.feeds import append
from tests.workers.schema import create_things


@pytest.fixture
def cluster_context(
    database_url: str, redis_url: str, redis_cluster_url: str,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> Iterator[JobContext]:
    """A worker's wiring as `pgsift worker` would have it: feed and dumps on the
    cluster, jobs on the plain Redis, the gateway's policies."""
    monkeypatch.setenv("PGSIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("PGSIFT_REDIS_URL", redis_cluster_url)
    monkeypatch.setenv("PGSIFT_JOBS_REDIS_URL", redis_url)
    monkeypatch.delenv("PGSIFT_DUMPS_DIR", raising=False)
    config = tmp_path / "pgsift.toml"
    config.write_text('[policies."public.things"]\nrow = "team = ANY(auth.teams)"\n')
    monkeypatch.setenv("PGSIFT_CONFIG", str(config))
    context = JobContext.from_settings()
    yield context
    context.close()


def test_a_dump_built_and_served_on_a_cluster(
    cluster_context: JobContext, database_url: str, redis_url: str, redis_cluster_url: str
) -> None:
    context = cluster_context
    create_things(database_url, 2000)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE things REPLICA IDENTITY FULL")
    older = [append(context.client, context.database, lsn) for lsn in (10, 20, 30)]
    settings = Settings(database_url=database_url, redis_url=redis_cluster_url,
                        jobs_redis_url=redis_url, policies=POLICIES)
    wiring = Wiring.from_settings(settings)
    expected = expected_rows(database_url, (1,))
    try:
        with bootstrap_client(wiring, SECRET) as http:
            response, lines = bootstrap(http)
            assert response.headers["x-pgsift-source"] == "live"
            live_cursor = check_complete(lines, "live", expected)
            # The build went to RQ on the plain Redis; the worker builds into the cluster.
            assert Queue(DUMPS_QUEUE, connection=wiring.jobs_client).count == 1
            run_jobs(wiring.jobs_client)
            response, lines = bootstrap(http)
            assert response.headers["x-pgsift-source"] == "dump"
            cursor = check_complete(lines, "dump", expected)
            assert cursor.split("@")[0] == live_cursor.split("@")[0] == older[-1]
    finally:
        wiring.close()
    # Trimming runs on the cluster too, and never past the dump's position.
    newer = [append(context.client, context.database, lsn) for lsn in (40, 50)]
    trim = dataclasses.replace(context, settings=context.settings.replace(feed_max_len=1))
    result = trim_feed_in(trim)
    assert (result.trimmed, result.first_id, result.floor) == (2, older[-1], older[-1])
    assert context.reader.bounds().trimmed == older[1]
    assert [e.id for e in context.reader.read_after(None)] == [older[-1], *newer]
    assert drop_stale_in(context) == []
    # Nothing of the database's own on the jobs' Redis: only RQ's keys.
    plain = redis.Redis.from_url(redis_url)
    assert [k for k in plain.scan_iter() if not k.startswith(b"rq:")] == []
    plain.close()


def test_dump_leases_hold_off_a_drop_on_a_cluster(cluster_context: JobContext) -> None:
    """The lease and the claim to drop (WATCH + MULTI) on the cluster's one slot."""
    client, database = cluster_context.client, cluster_context.database
    lease(client, database, "served")
    assert leased_ids(client, database) == {"served"}
    assert not claim_for_drop(client, database, "served")
    assert claim_for_drop(client, database, "unleased")
    assert client.exists(dump_keys.dump_dropping(database, "unleased"))


def test_rq_on_a_cluster_is_refused_with_what_to_set(
    database_url: str, redis_cluster_url: str
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_cluster_url)
    with pytest.raises(ConfigError, match="jobs_redis_url"):
        Wiring.from_settings(settings)
