"""The demo's child processes: started in order, watched, stopped in reverse order.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
the demo, which then stops the children one by one. Their output goes to a log
file; when one dies on its own, its last lines say why.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 20


class DemoFailure(Exception):
    """The demo cannot go on: a child died or something never became ready."""


@dataclass(frozen=True)
class Child:
    """One running child: its name, process and log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def last_lines(self, count: int = LOG_TAIL_LINES) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as lines:
            tail = deque(lines, maxlen=count)
        return "".join("    | " + line for line in tail).rstrip() or "    (no output)"

    def failure(self, what: str) -> DemoFailure:
        return DemoFailure(f"{self.name} {what}; its last log lines:\n{self.last_lines()}")


class Children:
    """The processes the demo started; `check()` raises when one has exited."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[Child] = []

    def start(self, name: str, argv: Sequence[str]) -> Child:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                list(argv), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        child = Child(name, process, log)
        self.running.append(child)
        return child

    def check(self) -> None:
        for child in self.running:
            code = child.process.poll()
            if code is not None:
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                raise child.failure(f"stopped unexpectedly ({how})")

    def wait_for(
        self, ready: Callable[[], bool], child: Child, what: str, *, timeout: float
    ) -> None:
        """Poll `ready` while every child stays up; after `timeout` s blame `child`."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise child.failure(f"is not {what} after {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to all, newest first; SIGKILL whatever is left after a grace period."""
        for child in reversed(self.running):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.running):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.running.clear()
