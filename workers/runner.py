"""Running RQ workers on pgsift's queues (what `pgsift worker` does)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import redis
from rq import Queue, SimpleWorker, Worker

from pgsift.middleware.dumps.enqueue import QUEUES
from pgsift.workers.context import JobContext
from pgsift.workers.schedule import TICK_S, run_scheduler


def run_worker(
    context: JobContext,
    *,
    queues: Sequence[str] = QUEUES,
    burst: bool = False,
    scheduler: bool = True,
    fork: bool = True,
    tick_s: float = TICK_S,
) -> bool:
    """Work `queues` until stopped (or, with `burst`, until they are empty)."""
    connection: redis.Redis[bytes] = context.jobs_client
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class([Queue(name, connection=connection) for name in queues],
                          connection=connection)
    stop = threading.Event()
    if scheduler and not burst:
        threading.Thread(target=run_scheduler, args=(context, stop, tick_s),
                         name="pgsift-scheduler", daemon=True).start()
    try:
        # RQ's own scheduler moves retried jobs back when their backoff is over.
        return bool(worker.work(burst=burst, with_scheduler=True))
    finally:
        stop.set()
