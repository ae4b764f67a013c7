"""What a dump build tells whoever follows its RQ job: attempt, progress, last failure.

The build job writes them into its job's meta (`BuildReporter`); `pgsift warm`
reads them back (`BuildStatus.of`) to draw a bar per running build and print
a line per change. The worker's log gets a progress line every `LOG_EVERY_S`
too, for operators who watch workers rather than `pgsift warm`. The meta
outlives RQ's retries (the retried job is saved with it), so the failure of
one attempt is still there while the next one runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rq.job import Job

from pgsift.middleware.progress import progress_line

log = logging.getLogger(__name__)

# Seconds between progress lines of one build in the worker's log.
LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class BuildProgress:
    rows: int
    estimate: int  # the planner's guess of the total
    elapsed_s: float

    def describe(self) -> str:
        """`12,000/~50,000 rows, 3,400 rows/s, ETA 11s`, as `pgsift warm` shows it."""
        rate = self.rows / self.elapsed_s if self.elapsed_s > 0 else None
        return progress_line(self.rows, total=self.estimate or None, unit="rows", per_s=rate,
                             estimated=True)


@dataclass(frozen=True, slots=True)
class BuildStatus:
    """A build job's meta, read back."""

    attempt: int  # 1-based; 0 before the job first started
    attempts: int  # the first run and RQ's retries
    rows: int | None  # None until this attempt reports progress
    estimate: int
    error: str | None  # the last failure: "WorkerError: ..."
    failed_attempt: int  # the attempt that failed with `error`; 0 when none did

    @classmethod
    def of(cls, job: Job) -> BuildStatus:
        meta: dict[str, Any] = job.meta
        rows = meta.get("rows")
        return cls(
            attempt=int(meta.get("attempt", 0)),
            attempts=int(meta.get("attempts", 1 + (job.retries_left or 0))),
            rows=None if rows is None else int(rows),
            estimate=int(meta.get("estimate", 0)),
            error=meta.get("error"),
            failed_attempt=int(meta.get("failed_attempt", 0)),
        )


class BuildReporter:
    """The progress callback of one build: into the job's meta at every call, into
    the log every `log_every_s`. Without a job (a build outside RQ) only the log."""

    def __init__(
        self,
        job: Job | None,
        shape_key: str,
        *,
        log_every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.shape_key = shape_key
        self._log_every_s = log_every_s
        self._clock = clock
        self._logged = clock()

    def started(self) -> None:
        """A new attempt: its number, and no progress yet (a retry's restarts at 0)."""
        if self.job is not None:
            # RQ keeps only the retries left; the total is what was left at the first run.
            left = self.job.retries_left or 0
            attempts = int(self.job.meta.setdefault("attempts", 1 + left))
            self.job.meta["attempt"] = attempts - left
            for name in ("rows", "estimate", "elapsed_s"):
                self.job.meta.pop(name, None)
            self.job.save_meta()  # type: ignore[no-untyped-call]

    def __call__(self, progress: BuildProgress) -> None:
        if self.job is not None:
            self.job.meta.update(rows=progress.rows, estimate=progress.estimate,
                                 elapsed_s=progress.elapsed_s)
            self.job.save_meta()  # type: ignore[no-untyped-call]
        now = self._clock()
        if now - self._logged >= self._log_every_s:
            self._logged = now
            log.info("shape %s: %s", self.shape_key, progress.describe())

    def failed(self, exc: BaseException) -> None:
        """Why this attempt failed, for whoever follows the job (RQ keeps the traceback
        of a retried job only in the worker's log)."""
        if self.job is not None:
            message = str(exc).strip().splitlines()
            reason = type(exc).__name__ + (f": {message[0]}" if message else "")
            self.job.meta.update(error=reason, failed_attempt=self.job.meta.get("attempt", 1))
            self.job.save_meta()  # type: ignore[no-untyped-call]
