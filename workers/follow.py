"""Following enqueued dump builds: one line per change of a job, a bar per running build.

    scheduled 3f9a0c1b2d4e  attempt 2 of 4 in 10s
    ^ the job's RQ status, as a word

Lines say what changed: the status (`queued`, `started`, `finished`,
`scheduled` for a retry after a backoff, `failed`, ...), the attempt and,
for a failed attempt, its reason (from the build's meta, see
`pgsift.workers.build_status`) whether RQ retries it or not. A running
build's rows, rate and ETA (against the planner's estimate) are a bar of the
`ProgressDisplay` on a terminal, an occasional plain line elsewhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from pgsift.middleware.progress import ProgressDisplay, TaskID, format_duration
from pgsift.workers.build_status import BuildStatus

POLL_S = 1.0
KEY_CHARS = 12
DONE = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})


def job_line(word: str, shape_key: str, text: str) -> str:
    """`started   3f9a0c1b2d4e  attempt 1 of 4`: the word first, aligned."""
    return f"{word:<9} {shape_key[:KEY_CHARS]}  {text}".rstrip()


@dataclass
class FollowedJob:
    """One build job and what has been shown of it so far."""

    job: Job
    shape_key: str
    status: JobStatus = JobStatus.QUEUED  # what the line of its enqueueing said
    failures_shown: int = 0
    task: TaskID | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.FINISHED


def follow(jobs: list[FollowedJob], display: ProgressDisplay,
           stop: threading.Event | None = None, poll_s: float = POLL_S) -> None:
    """Show every job's changes until all are done, or until `stop` (after one last look)."""
    stop = stop or threading.Event()
    while True:
        stopping = stop.is_set()
        for followed in jobs:
            show(followed, display)
        if stopping or all(followed.done for followed in jobs):
            for followed in jobs:
                _drop_bar(followed, display)
            return
        stop.wait(poll_s)


def show(followed: FollowedJob, display: ProgressDisplay) -> None:
    """Print what changed since the last look at the job; keep its bar current."""
    job = followed.job
    try:
        job.refresh()  # type: ignore[no-untyped-call]
    except NoSuchJobError:
        return  # expired (result_ttl): its last state was shown
    status = job.get_status(refresh=False)
    build = BuildStatus.of(job)
    failed = build.failed_attempt > followed.failures_shown
    if failed:
        followed.failures_shown = build.failed_attempt
        final = status in DONE - {JobStatus.FINISHED} and build.failed_attempt >= build.attempt
        after = "no retries left" if final else "RQ retries it"
        display.print(job_line("failed", followed.shape_key,
                               f"attempt {build.failed_attempt} of {build.attempts}: "
                               f"{build.error}; {after}"))
    # After a failure the status is news even when it is the one last shown
    # (`scheduled` again, for the next retry).
    if status != followed.status or failed:
        followed.status = status
        if status == JobStatus.STARTED:
            # Cleared at each start: the bar of a retry starts at 0.
            _drop_bar(followed, display)
        text = describe(job, status, build)
        if text is not None:
            display.print(job_line(status.value, followed.shape_key, text))
    if status == JobStatus.STARTED and build.rows is not None:
        if followed.task is None:
            # Rows built before this look are not rows per second since it.
            followed.task = display.add(followed.shape_key[:KEY_CHARS],
                                        total=build.estimate or None, unit="rows",
                                        estimated=True, completed=build.rows)
        display.update(followed.task, build.rows, total=build.estimate or None)
    elif status != JobStatus.STARTED:
        _drop_bar(followed, display)


def describe(job: Job, status: JobStatus, build: BuildStatus) -> str | None:
    """What goes after the status word; None when a line of its own said it already."""
    if status == JobStatus.STARTED:
        # From RQ's count, as the build records it: the meta's `attempt` is the last
        # attempt's until the worker's build has started (0 before the first).
        return f"attempt {build.attempts - (job.retries_left or 0)} of {build.attempts}"
    if status == JobStatus.FINISHED:
        return _result(job.return_value())
    if status == JobStatus.SCHEDULED:
        return f"attempt {build.failed_attempt + 1} of {build.attempts}{_due_in(job)}"
    if status == JobStatus.FAILED:
        if build.failed_attempt and build.failed_attempt == build.attempt:
            return None  # its failure line said why
        return "see the worker's log (the worker died, or the job was stopped)"
    return ""


def _result(result: Any) -> str:
    if isinstance(result, dict) and result.get("status") == "built":
        mb = result["body_bytes"] / 1e6
        return (f"built {result['rows']:,} rows, {mb:.1f} MB "
                f"in {format_duration(result['seconds'])}")
    return "skipped: another build of this shape was running"


def _due_in(job: Job) -> str:
    queue = Queue(job.origin, connection=job.connection)
    registry = ScheduledJobRegistry(queue=queue)  # type: ignore[no-untyped-call]
    try:
        due = registry.get_scheduled_time(job)
    except NoSuchJobError:
        return ""
    return f" in {format_duration((due - datetime.now(UTC)).total_seconds())}"


def _drop_bar(followed: FollowedJob, display: ProgressDisplay) -> None:
    if followed.task is not None:
        display.finish(followed.task)
        followed.task = None
