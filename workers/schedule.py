"""The periodic side of the workers: warm builds, feed trimming, dump cleanup.

Every `pgsift worker` runs this loop in a thread, but only the one holding the
scheduler lock enqueues, so N workers do the work once per tick. The jobs
themselves run on the maintenance queue like any other.
"""

from __future__ import annotations

import logging
import secrets
import threading

from rq import Queue

from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.enqueue import MAINTENANCE_QUEUE
from pgsift.workers.context import JobContext

log = logging.getLogger(__name__)

TICK_S = 60.0
WARM_JOB = "pgsift.workers.warm.warm"
TRIM_JOB = "pgsift.workers.trim.trim_feed"
DROP_JOB = "pgsift.workers.trim.drop_stale_dumps"


def tick(context: JobContext, owner: str, tick_s: float = TICK_S) -> bool:
    """Enqueue one round of maintenance if this process leads this tick."""
    lock = keys.scheduler_lock(context.database)
    # The lock outlives the tick a little, so a second worker cannot slip in twice.
    if not context.client.set(lock, owner, nx=True, px=int(tick_s * 900)):
        return False
    queue = Queue(MAINTENANCE_QUEUE, connection=context.jobs_client)
    for job in (WARM_JOB, DROP_JOB, TRIM_JOB):
        queue.enqueue(job, job_timeout=600, result_ttl=600)
    return True


def run_scheduler(context: JobContext, stop: threading.Event, tick_s: float = TICK_S) -> None:
    """Tick until `stop` is set (runs in a daemon thread of `pgsift worker`)."""
    owner = secrets.token_hex(8)
    while not stop.is_set():
        try:
            if tick(context, owner, tick_s):
                log.debug("scheduler: enqueued maintenance")
        except Exception:
            log.exception("scheduler tick failed; retrying next tick")
        stop.wait(tick_s)
