"""Fixtures of the worker tests: job settings from the environment, burst workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from rq import Queue, SimpleWorker

from pgsift.middleware.dumps.enqueue import QUEUES
from pgsift.workers.context import JobContext


@pytest.fixture
def context(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[JobContext]:
    """Jobs read their settings from PGSIFT_*, as under `pgsift worker`."""
    monkeypatch.setenv("PGSIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("PGSIFT_REDIS_URL", redis_url)
    monkeypatch.delenv("PGSIFT_CONFIG", raising=False)
    monkeypatch.delenv("PGSIFT_DUMPS_DIR", raising=False)
    ctx = JobContext.from_settings()
    yield ctx
    ctx.close()


def run_jobs(client: redis.Redis[bytes]) -> None:
    """Work pgsift's queues in this process until they are empty."""
    worker = SimpleWorker([Queue(q, connection=client) for q in QUEUES], connection=client)
    worker.work(burst=True)
