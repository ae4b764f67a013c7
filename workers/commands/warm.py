"""`pgsift warm`: enqueue dump builds of the warm shapes and follow them.

    queued    3f9a0c1b2d4e  no dump  SELECT id, name FROM things WHERE team = $1  params [2]
    started   3f9a0c1b2d4e  attempt 1 of 4
    finished  3f9a0c1b2d4e  built 100 rows, 0.0 MB in 0.1s

One line per enqueued shape (why it is due, its query, params and claims),
then one line per change of its job (`pgsift.workers.follow`), with a bar per
running build on a terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading

from rq import Worker
from rq.job import JobStatus

from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE
from pgsift.middleware.progress import ProgressDisplay
from pgsift.workers.commands.worker import add_connection_flags, settings_for_jobs
from pgsift.workers.context import JobContext
from pgsift.workers.follow import FollowedJob, follow, job_line
from pgsift.workers.runner import run_worker
from pgsift.workers.warm import DueBuild, enqueue_warm

# Their INFO lines say again what the lines of `follow` say (RQ sets its own
# loggers' levels, so each is named).
QUIETED_LOGGERS = ("rq.worker", "rq.job", "rq.scheduler", "pgsift.workers")


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
    if logging.getLogger().getEffectiveLevel() >= logging.INFO:
        for name in QUIETED_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    context = JobContext.from_settings(settings_for_jobs(args))
    try:
        with ProgressDisplay() as display:
            return warm(context, args, display)
    finally:
        context.close()


def warm(context: JobContext, args: argparse.Namespace, display: ProgressDisplay) -> int:
    """Enqueue, then (unless --no-wait) follow the jobs; 0 when every build finished."""
    enqueued = enqueue_warm(context, force=args.now)
    if not enqueued:
        display.print("nothing to warm: every warm shape has a fresh dump (--now rebuilds)")
        return 0
    for build, _ in enqueued:
        display.print(job_line("queued", build.shape_key, shape_text(build)))
    if args.no_wait:
        return 0
    jobs = [FollowedJob(job, build.shape_key) for build, job in enqueued]
    if args.burst:
        stop = threading.Event()
        watcher = threading.Thread(target=follow, args=(jobs, display, stop), daemon=True)
        watcher.start()
        try:
            run_worker(context, queues=[DUMPS_QUEUE], burst=True, scheduler=False, fork=False)
        finally:
            stop.set()
            watcher.join()
        # A running `pgsift worker` may have taken some first: wait for those too (a retry
        # waiting for its backoff is left to the workers, as the lines below say).
        follow([followed for followed in jobs
                if not followed.done and followed.status != JobStatus.SCHEDULED], display)
    else:
        if not Worker.all(connection=context.jobs_client):
            display.print(f"note: no worker is running; start `pgsift worker` (queue "
                          f"{DUMPS_QUEUE}) or use --burst")
        follow(jobs, display)
    waiting = [followed for followed in jobs if not followed.done]
    for followed in waiting:
        display.print(job_line(followed.status.value, followed.shape_key,
                               "not done yet: a running `pgsift worker` goes on with it"))
    return 0 if all(followed.succeeded for followed in jobs) else 1


def shape_text(build: DueBuild) -> str:
    """Why the shape is due, its query, and its params and claims when it has any."""
    shape = build.shape
    parts = [build.reason, shape.query]
    if shape.params:
        parts.append("params " + json.dumps(list(shape.params), default=str))
    if shape.claims:
        parts.append("claims " + json.dumps(dict(shape.claims), sort_keys=True, default=str))
    return "  ".join(parts)
