"""Following build jobs (what `pgsift warm` shows): status words, failure reasons, bars."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker
from rq.job import JobStatus

from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE, RETRY_INTERVALS_S, enqueue_build
from pgsift.middleware.progress import ProgressDisplay
from pgsift.workers.build_status import BuildProgress, BuildReporter, BuildStatus
from pgsift.workers.context import JobContext
from pgsift.workers.follow import FollowedJob, follow, show

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MISSING = "SELECT id FROM no_such_table"


def look(jobs: list[FollowedJob], display: ProgressDisplay) -> None:
    """One look at the jobs, as `follow` takes at each poll."""
    stop = threading.Event()
    stop.set()
    follow(jobs, display, stop)


def test_a_retried_build_says_why_each_attempt_failed(context: JobContext) -> None:
    job = enqueue_build(context.client, context.database, jobs=context.jobs_client,
                        shape_key="a" * 64, query=MISSING,
                        params=[])
    assert job is not None
    queue = Queue(DUMPS_QUEUE, connection=context.client)
    scheduled = queue.scheduled_job_registry
    out = io.StringIO()
    followed = [FollowedJob(job, "a" * 64)]
    with ProgressDisplay(file=out) as display:
        for _ in RETRY_INTERVALS_S:
            SimpleWorker([queue], connection=context.client).work(burst=True, with_scheduler=True)
            look(followed, display)
            # Due now: the next burst's scheduler enqueues it and the worker runs it again.
            context.client.zadd(scheduled.key, {job.id: time.time() - 1})
        SimpleWorker([queue], connection=context.client).work(burst=True, with_scheduler=True)
        look(followed, display)
    lines = out.getvalue().splitlines()
    reason = "QueryError: .*no_such_table.*"
    for attempt in (1, 2, 3):
        assert re.fullmatch(rf"failed    aaaaaaaaaaaa  attempt {attempt} of 4: {reason}; "
                            "RQ retries it", lines[2 * attempt - 2]), lines
        assert re.fullmatch(rf"scheduled aaaaaaaaaaaa  attempt {attempt + 1} of 4 in \d.*s",
                            lines[2 * attempt - 1]), lines
    assert re.fullmatch(rf"failed    aaaaaaaaaaaa  attempt 4 of 4: {reason}; no retries left",
                        lines[6]), lines
    assert len(lines) == 7
    assert followed[0].done and not followed[0].succeeded
    status = BuildStatus.of(job)
    assert (status.attempt, status.attempts, status.failed_attempt) == (4, 4, 4)


def test_a_started_line_names_the_attempt_before_the_build_records_it(
    context: JobContext,
) -> None:
    """A look can fall between a worker taking the job and its build writing the meta."""
    job = enqueue_build(context.client, context.database, shape_key="e" * 64, query=MISSING,
                        params=[])
    assert job is not None
    queue = Queue(DUMPS_QUEUE, connection=context.client)
    out = io.StringIO()
    followed = [FollowedJob(job, "e" * 64)]
    with ProgressDisplay(file=out) as display:
        job.set_status(JobStatus.STARTED)  # taken; the meta has no attempt yet
        look(followed, display)
        SimpleWorker([queue], connection=context.client).work(burst=True)  # attempt 1 fails
        look(followed, display)
        job.set_status(JobStatus.STARTED)  # the retry taken; the meta still says attempt 1
        look(followed, display)
    lines = out.getvalue().splitlines()
    assert lines[0] == "started   eeeeeeeeeeee  attempt 1 of 4"
    assert lines[1].startswith("failed    eeeeeeeeeeee  attempt 1 of 4: QueryError: ")
    assert lines[2].startswith("scheduled eeeeeeeeeeee  attempt 2 of 4 in ")
    assert lines[3:] == ["started   eeeeeeeeeeee  attempt 2 of 4"]


def test_a_running_build_is_a_bar_with_rows_rate_and_eta(context: JobContext) -> None:
    job = enqueue_build(context.client, context.database, jobs=context.jobs_client,
                        shape_key="b" * 64,
                        query="SELECT 1", params=[])
    assert job is not None
    # What the worker does while it builds: the job started, its progress in the meta.
    job.set_status(JobStatus.STARTED)
    reporter = BuildReporter(job, "b" * 64)
    reporter.started()
    out = io.StringIO()
    now = [100.0]
    followed = FollowedJob(job, "b" * 64)
    with ProgressDisplay(file=out, terminal=True, clock=lambda: now[0]) as display:
        reporter(BuildProgress(rows=10_000, estimate=100_000, elapsed_s=1.0))
        show(followed, display)
        now[0] += 2.0
        reporter(BuildProgress(rows=30_000, estimate=100_000, elapsed_s=3.0))
        show(followed, display)
        display.print("--")
        screen = ANSI.sub("", out.getvalue())
    assert "started   bbbbbbbbbbbb  attempt 1 of 4" in screen
    bar = screen.split("--")[-1]
    # 20,000 rows between two looks 2 s apart; 70,000 to go at that rate.
    assert "30,000/~100,000 rows" in bar and "10,000 rows/s" in bar and "ETA 7s" in bar


def test_the_reason_reaches_the_meta_through_a_forking_worker(
    context: JobContext, database_url: str, redis_url: str
) -> None:
    """`pgsift worker` forks a work horse per job: the reason must leave the horse too."""
    job = enqueue_build(context.client, context.database, jobs=context.jobs_client,
                        shape_key="c" * 64, query=MISSING,
                        params=[])
    assert job is not None
    worker = subprocess.run(
        [str(Path(sys.executable).parent / "pgsift"), "worker", "--burst", "--queues",
         DUMPS_QUEUE, "--database-url", database_url, "--redis-url", redis_url],
        capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == 0, worker.stderr
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED
    status = BuildStatus.of(job)
    assert (status.attempt, status.failed_attempt) == (1, 1)
    assert status.error is not None and "no_such_table" in status.error


def test_the_worker_logs_a_long_build_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    """For operators who watch workers rather than `pgsift warm`: rows, rate, ETA."""
    now = [0.0]
    reporter = BuildReporter(None, "d" * 64, log_every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="pgsift.workers.build_status"):
        for second in range(1, 26):
            now[0] = float(second)
            reporter(BuildProgress(rows=2_000 * second, estimate=100_000, elapsed_s=second))
        # Past the planner's estimate: no total, no ETA, rather than "60,000/~50,000".
        now[0] = 40.0
        reporter(BuildProgress(rows=60_000, estimate=50_000, elapsed_s=30.0))
    assert [record.getMessage() for record in caplog.records] == [
        f"shape {'d' * 64}: 20,000/~100,000 rows, 2,000 rows/s, ETA 40s",
        f"shape {'d' * 64}: 40,000/~100,000 rows, 2,000 rows/s, ETA 30s",
        f"shape {'d' * 64}: 60,000 rows, 2,000 rows/s",
    ]
