"""`pgsift serve --workers N`: N gateway processes on one listening socket, kept running.

One Python process routes and encodes on one core, so a machine with more
cores runs more gateways. They need nothing from each other: each is a whole
gateway (its own feed tailer, Redis and Postgres connections, sessions), as
when they run on separate hosts, and a client resumes from its cursor on any
of them. The supervisor binds the port once, forks the workers, which all
accept from that socket (the kernel hands each connection to one of them), and
forks a new one when a worker dies; SIGTERM or SIGINT stops them all.
A worker that dies at once again and again is restarted ever more slowly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

# Waits between restarts of a worker that keeps dying: doubled each time, reset
# once a worker has run for STEADY_S.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
STEADY_S = 30.0
# How long stopped workers get to close their connections before SIGKILL.
STOP_WAIT_S = 10.0


class Supervisor:
    """Runs `serve(listener)` in `workers` forked processes until told to stop."""

    def __init__(
        self, listener: socket.socket, serve: Callable[[socket.socket], None], *, workers: int
    ) -> None:
        self.listener = listener
        self.serve = serve
        self.workers = workers
        self.pids: dict[int, float] = {}  # worker pid -> monotonic start time
        self._stopping = False
        self._delay = RESTART_FIRST_S

    def run(self) -> int:
        """Fork the workers and keep them running; 0 once stopped by a signal."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        for _ in range(self.workers):
            self._fork()
        while self.pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            started = self.pids.pop(pid, None)
            if started is None or self._stopping:
                continue
            self._restart(pid, status, time.monotonic() - started)
        return 0

    def _restart(self, pid: int, status: int, ran_s: float) -> None:
        log.warning("gateway worker %d exited (%s) after %.1f s; starting another",
                    pid, _describe(status), ran_s)
        if ran_s >= STEADY_S:
            self._delay = RESTART_FIRST_S
        else:
            time.sleep(self._delay)
            self._delay = min(self._delay * 2, RESTART_MAX_S)
        if not self._stopping:
            self._fork()

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:
            self._worker()
        self.pids[pid] = time.monotonic()
        log.info("gateway worker %d started", pid)

    def _worker(self) -> None:
        """In the child: serve until stopped, then leave without running the parent's
        cleanup (its `finally` blocks and atexit handlers are the supervisor's)."""
        code = 0
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.serve(self.listener)
        except BaseException:
            log.exception("gateway worker %d failed", os.getpid())
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping %d gateway workers", len(self.pids))
        for pid in list(self.pids):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for pid in list(self.pids):
            while time.monotonic() < deadline and _running(pid):
                time.sleep(0.05)
            if _running(pid):
                _signal(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
