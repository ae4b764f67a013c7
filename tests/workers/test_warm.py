"""Cache warming: which shapes are due, the scheduler tick, `pgsift warm` and `pgsift worker`."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Queue, Worker
from rq.job import JobStatus

from pgsift.middleware.cli import main
from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.enqueue import (
    DUMPS_QUEUE,
    MAINTENANCE_QUEUE,
    bump_popularity,
    popular_specs,
)
from pgsift.middleware.errors import ConfigError
from pgsift.workers.context import JobContext
from pgsift.workers.schedule import tick
from pgsift.workers.warm import enqueue_warm, parse_duration
from tests.workers.conftest import run_jobs
from tests.workers.feeds import append
from tests.workers.schema import create_things

CONFIGURED = "SELECT id, name FROM things WHERE team = $1"
POPULAR = "SELECT id, price FROM things WHERE ok"


def test_parse_duration() -> None:
    assert [parse_duration(v) for v in ("90", "30s", "5m", "2h", "1d", 7, "1.5m")] == [
        90, 30, 300, 7200, 86400, 7, 90]
    with pytest.raises(ConfigError, match="5 minutes"):
        parse_duration("5 minutes")


def with_warm(context: JobContext, **settings: object) -> JobContext:
    warm = ({"query": CONFIGURED, "params": [1], "every": "1h"},)
    return dataclasses.replace(context, settings=context.settings.replace(
        warm=warm, dumps_warm_changes=50, **settings))


def test_due_when_missing_old_or_changed(context: JobContext, database_url: str) -> None:
    create_things(database_url, 300)
    context = with_warm(context)
    shape_key = context.shape(POPULAR)[1].shape_key
    bump_popularity(context.client, context.database, shape_key, POPULAR, [], None, amount=5)
    first = enqueue_warm(context)
    assert sorted(build.reason for build, _ in first) == ["no dump", "no dump"]
    run_jobs(context.client)
    assert all(job.get_status() == JobStatus.FINISHED for _, job in first)
    assert enqueue_warm(context) == []
    # Changes to the table since the dumps' feed position make them due again.
    append(context.client, context.database, 10**6, table="public.things", changes=60)
    assert sorted(b.reason for b, _ in enqueue_warm(context)) == ["60 changes", "60 changes"]
    run_jobs(context.client)
    assert enqueue_warm(context, force=True)[0][0].reason == "forced"
    run_jobs(context.client)
    aged = with_warm(context, dumps_warm_every_s=0.0)
    assert [b.reason for b, _ in enqueue_warm(aged)] == ["older than 0s"]


def test_one_scheduler_tick_enqueues_maintenance_once(context: JobContext) -> None:
    assert tick(context, "worker-a")
    assert not tick(context, "worker-b")
    queue = Queue(MAINTENANCE_QUEUE, connection=context.client)
    jobs = queue.get_jobs()
    assert len(jobs) == 3
    run_jobs(context.client)
    assert all(job.get_status() == JobStatus.FINISHED for job in jobs)


def test_pgsift_warm_builds_and_reports(context: JobContext, database_url: str, redis_url: str,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    create_things(database_url, 300)
    config = tmp_path / "pgsift.toml"
    config.write_text(f'[[warm]]\nquery = "{CONFIGURED}"\nparams = [2]\nevery = "10m"\n')
    args = ["warm", "--config", str(config), "--database-url", database_url,
            "--redis-url", redis_url]
    key = context.shape(CONFIGURED, [2])[1].shape_key[:12]
    assert main([*args, "--burst"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out  # not a terminal: no bars
    lines = out.splitlines()
    # One line per job and change, its status a word; the shape's params shown.
    assert lines[0] == f"queued    {key}  no dump  {CONFIGURED}  params [2]"
    assert re.fullmatch(rf"finished  {key}  built 100 rows, 0\.0 MB in \S+s", lines[-1])
    assert all(re.match(rf"(queued|started|finished) +{key}  ", line) for line in lines), lines
    assert main([*args, "--burst"]) == 0
    assert "nothing to warm" in capsys.readouterr().out
    assert main([*args, "--now", "--no-wait"]) == 0
    assert capsys.readouterr().out.startswith(f"queued    {key}  forced  {CONFIGURED}  params [2]")
    # A real `pgsift worker` (forking RQ worker) picks the job up.
    worker = subprocess.run(
        [str(Path(sys.executable).parent / "pgsift"), "worker", "--burst", "--database-url",
         database_url, "--redis-url", redis_url, "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == 0, worker.stderr
    assert Queue(DUMPS_QUEUE, connection=context.client).count == 0
    assert len(context.store.all_dumps()) == 2


def test_warm_burst_waits_for_builds_a_running_worker_took(
    context: JobContext, database_url: str, redis_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An idle `pgsift worker` usually takes the build before warm's own burst worker
    starts; either way, `warm --burst` shows it through to its end."""
    create_things(database_url, 300)
    config = tmp_path / "pgsift.toml"
    config.write_text(f'[[warm]]\nquery = "{CONFIGURED}"\nparams = [2]\nevery = "10m"\n')
    urls = ["--config", str(config), "--database-url", database_url, "--redis-url", redis_url]
    # Its own process group: the worker, RQ's scheduler process and a work horse end
    # together at once (a warm shutdown can wait up to a minute on RQ's pubsub thread).
    other = subprocess.Popen(
        [str(Path(sys.executable).parent / "pgsift"), "worker", "--queues", DUMPS_QUEUE, *urls],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # a hang guard
        while not Worker.all(connection=context.client) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert main(["warm", "--burst", *urls]) == 0
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait(60)
    key = context.shape(CONFIGURED, [2])[1].shape_key[:12]
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"finished  {key}  built 100 rows, 0\.0 MB in \S+s", lines[-1]), lines
    assert not any("not done yet" in line for line in lines), lines


def test_popularity_keeps_only_the_most_counted_shapes(context: JobContext) -> None:
    for n in range(20):
        for _ in range(n % 4):
            bump_popularity(context.client, context.database, f"shape{n}", f"q{n}", [n],
                            {"teams": [n]}, keep=5)
    popular = keys.popular_shapes(context.database)
    assert context.client.zcard(popular) == 5
    assert context.client.hlen(keys.popular_specs(context.database)) == 5
    top = popular_specs(context.client, context.database, 10)
    assert {n for n in range(20) if n % 4 == 3} <= {spec["params"][0] for _, spec in top}
    assert all(spec == {"query": f"q{spec['params'][0]}", "params": spec["params"],
                        "claims": {"teams": spec["params"]}} for _, spec in top)
