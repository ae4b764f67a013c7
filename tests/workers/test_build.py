"""Dump builds: read back equal to Postgres, safe to run twice at once, safe to kill."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rq import Queue, SimpleWorker
from rq.job import JobStatus

from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE, RETRY_INTERVALS_S, enqueue_build
from pgsift.middleware.dumps.read import DumpSnapshot
from pgsift.subscriptions import wire
from pgsift.workers.build import DumpBuilder
from pgsift.workers.build_status import BuildProgress
from pgsift.workers.context import JobContext
from tests.wire import wire_rows
from tests.workers.conftest import run_jobs
from tests.workers.schema import COLUMNS, THINGS_TYPES, create_things, select

QUERY = f"SELECT {COLUMNS} FROM things WHERE team = $1"


def as_json(rows: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return wire_rows(rows.values(), THINGS_TYPES)


@pytest.mark.parametrize("store", ["redis", "file"])
def test_a_built_dump_reads_back_as_the_select(
    context: JobContext, database_url: str, store: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if store == "file":
        monkeypatch.setenv("PGSIFT_DUMPS_DIR", str(tmp_path))
        context = JobContext.from_settings()
    create_things(database_url, 3000)
    shape, layout = context.shape(QUERY, [1])
    job = enqueue_build(context.client, context.database, jobs=context.jobs_client,
                        shape_key=shape.key, query=QUERY, params=[1])
    assert job is not None
    # A second request while one is pending enqueues nothing.
    assert enqueue_build(context.client, context.database, jobs=context.jobs_client,
                         shape_key=shape.key, query=QUERY, params=[1]) is None
    run_jobs(context.client)
    result = job.return_value(refresh=True)
    assert result is not None and result["status"] == "built" and result["rows"] == 1000

    [info] = context.store.dumps(shape.key)
    assert info.header.columns == layout.columns and info.header.types == layout.types
    snapshot = DumpSnapshot(context.store, info)
    expected = select(database_url, f"SELECT {COLUMNS} FROM things WHERE team = 1")
    assert {r["id"]: r for r in snapshot.rows()} == as_json(expected)
    # Back to Python values: what psycopg returned, type for type.
    types = dict(zip(info.header.columns, info.header.types, strict=True))
    typed = {r["id"]: {c: None if v is None else wire.from_json(types[c], v)
                       for c, v in r.items()} for r in snapshot.rows()}
    assert as_json(typed) == as_json(expected)
    assert snapshot.count == 1000


def test_two_concurrent_builds_of_one_shape(context: JobContext, database_url: str) -> None:
    create_things(database_url, 2000)
    shape, layout = context.shape(QUERY, [2])
    second: list[Any] = []
    others = [JobContext.from_settings() for _ in range(3)]

    def hold(progress: BuildProgress) -> None:
        # While the first build is mid-way, a second one of the same shape starts.
        if not second:
            second.append(DumpBuilder(others[0]).build(shape, layout))

    try:
        first = DumpBuilder(context, progress_every_s=0.0).build(shape, layout, hold)
        assert first.status == "built"
        assert second[0].status == "locked"
        [info] = context.store.dumps(shape.key)
        assert info.dump_id == first.dump_id
        # Threads racing for real: never an error, never a half dump.
        results: list[Any] = []
        threads = [threading.Thread(target=lambda c=c: results.append(
            DumpBuilder(c).build(shape, layout))) for c in others[1:]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for other in others:
            other.close()
    assert {r.status for r in results} <= {"built", "locked"}
    assert "built" in {r.status for r in results}
    for info in context.store.dumps(shape.key):
        assert len(list(DumpSnapshot(context.store, info).rows())) == info.trailer.count == 667


KILLED_BUILD = """
import os, sys, time
from pgsift.workers.build import DumpBuilder
from pgsift.workers.context import JobContext
ctx = JobContext.from_settings()
shape, layout = ctx.shape(sys.argv[1], [0])
def stall(progress):
    print("building", flush=True)
    time.sleep(600)
DumpBuilder(ctx, lock_ttl_s=2.0, progress_every_s=0.0).build(shape, layout, stall)
"""


def test_a_killed_build_leaves_no_visible_dump(context: JobContext, database_url: str) -> None:
    create_things(database_url, 30000)
    shape, layout = context.shape(QUERY, [0])
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, QUERY], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"building\n"
        assert context.client.exists(keys.build_lock(context.database, shape.key))
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert context.store.all_dumps() == []
    # Its lock expires; the next build does the whole job.
    deadline = time.monotonic() + 30
    while context.client.exists(keys.build_lock(context.database, shape.key)):
        assert time.monotonic() < deadline, "the killed build's lock never expired"
        time.sleep(0.1)
    result = DumpBuilder(context).build(shape, layout)
    assert result.status == "built" and result.rows == 10000
    assert [i.dump_id for i in context.store.all_dumps()] == [result.dump_id]


def test_failed_builds_are_retried_with_backoff(context: JobContext) -> None:
    job = enqueue_build(context.client, context.database, jobs=context.jobs_client,
                        shape_key="k",
                        query="SELECT id FROM no_such_table", params=[])
    assert job is not None
    queue = Queue(DUMPS_QUEUE, connection=context.client)
    scheduled = queue.scheduled_job_registry
    for retries_left, interval in zip((2, 1), RETRY_INTERVALS_S, strict=False):
        started = time.time()
        SimpleWorker([queue], connection=context.client).work(burst=True, with_scheduler=True)
        job.refresh()
        # Failed, and scheduled again `interval` seconds after the failure: not lost.
        assert job.get_status() == JobStatus.SCHEDULED
        assert job.retries_left == retries_left
        assert job.id in scheduled.get_job_ids()
        due = scheduled.get_scheduled_time(job).timestamp()
        assert started + interval - 1 <= due <= time.time() + interval + 1
        # Due now: the next burst's scheduler enqueues it and the worker runs it.
        context.client.zadd(scheduled.key, {job.id: time.time() - 1})
    assert queue.count == 0
