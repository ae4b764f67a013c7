"""`pgsift warm`: enqueue dump builds of the warm shapes and show their progress."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from rq import Worker
from rq.job import Job, JobStatus

from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE
from pgsift.workers.commands.worker import add_connection_flags, settings_for_jobs
from pgsift.workers.context import JobContext
from pgsift.workers.runner import run_worker
from pgsift.workers.warm import enqueue_warm

POLL_S = 1.0
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "warm", help="enqueue dump builds of the [[warm]] and most-used shapes; show progress"
    )
    add_connection_flags(parser)
    parser.add_argument("--now", action="store_true",
                        help="rebuild every warm shape now, due or not")
    parser.add_argument("--burst", action="store_true",
                        help="build in this process instead of waiting for `pgsift worker`")
    parser.add_argument("--no-wait", action="store_true", help="enqueue and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    context = JobContext.from_settings(settings_for_jobs(args))
    try:
        enqueued = enqueue_warm(context, force=args.now)
        for build, _ in enqueued:
            print(f"enqueued {build.shape_key[:12]}  {build.reason}  ({build.shape.query})")
        if not enqueued:
            print("nothing to warm: every warm shape has a fresh dump (--now rebuilds)")
            return 0
        if args.no_wait:
            return 0
        jobs = [job for _, job in enqueued]
        if args.burst:
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(jobs, stop), daemon=True)
            watcher.start()
            run_worker(context, queues=[DUMPS_QUEUE], burst=True, scheduler=False, fork=False)
            stop.set()
            watcher.join()
        else:
            if not Worker.all(connection=context.client):
                print(f"note: no worker is running; start `pgsift worker` (queue {DUMPS_QUEUE})"
                      " or use --burst", file=sys.stderr)
            watch(jobs, threading.Event())
        return 0 if all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs) else 1
    finally:
        context.close()


def watch(jobs: list[Job], stop: threading.Event) -> None:
    """Print one progress line per job whenever it changes, until all are done."""
    shown: dict[str, str] = {}
    while True:
        done = 0
        for job in jobs:
            status = job.get_status(refresh=True)
            job.refresh()  # type: ignore[no-untyped-call]
            line = describe(job, status)
            if shown.get(job.id) != line:
                print(line, flush=True)
                shown[job.id] = line
            done += status in DONE
        if done == len(jobs) or stop.is_set():
            return
        time.sleep(POLL_S)


def describe(job: Job, status: Any) -> str:
    key = str(job.meta.get("shape_key", job.id))[:12]
    if status == JobStatus.FINISHED:
        result: Any = job.return_value()
        if isinstance(result, dict) and result.get("status") == "built":
            mb = result["body_bytes"] / 1e6
            return (f"{key}  built: {result['rows']:,} rows, {mb:.1f} MB "
                    f"in {result['seconds']:.1f}s")
        return f"{key}  skipped: another build of this shape is running"
    if status == JobStatus.FAILED:
        return f"{key}  failed (see the worker's log; RQ retries with backoff)"
    rows = job.meta.get("rows")
    if rows is None:
        return f"{key}  {status}"
    eta = job.meta.get("eta_s")
    eta_text = f", ETA {eta:.0f}s" if eta is not None else ""
    return (f"{key}  {rows:,}/~{job.meta.get('estimate', 0):,} rows, "
            f"{job.meta.get('rate', 0):,.0f} rows/s{eta_text}")
