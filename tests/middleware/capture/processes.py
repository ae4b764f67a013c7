"""Running `pgsift capture` as a real process in tests, and reading what it wrote."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import redis

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.heartbeat import READ_SCRIPT, HeartbeatReading, parse_reading
from pgsift.middleware.feed.reader import FeedReader

PGSIFT = [str(Path(sys.executable).parent / "pgsift")]
WAIT_S = 60.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll until `condition()`; fail naming `what` if it never happens (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class CaptureProcess:
    """`pgsift capture ...` in a subprocess; stderr goes to a log file for failure messages."""

    def __init__(
        self, database_url: str, redis_url: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.argv = [
            *PGSIFT, "--log-level", "DEBUG", "capture",
            "--database-url", database_url, "--redis-url", redis_url, *args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(tempfile.mkstemp(prefix="pgsift-capture-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CaptureProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env,
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def wait(self, timeout: float = WAIT_S) -> int:
        if self.process is None:
            return 0
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def capturing(
    database_url: str, redis_url: str, *, config: Path | None = None, **settings: str
) -> Iterator[CaptureProcess]:
    """`pgsift capture --all --setup` until the block ends; enters once its slot is active.

    `settings` become PGSIFT_* variables of the process (`capture_max_changes_per_entry="3"`);
    `config` is a pgsift.toml to read (with `[mutators]`, setup creates the ledger).
    """
    env = {f"PGSIFT_{k.upper()}": v for k, v in settings.items()}
    extra = ("--config", str(config)) if config is not None else ()
    process = CaptureProcess(
        database_url, redis_url, "--all", "--setup", *extra, env=env
    ).start()
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            def active() -> bool:
                if not process.running():
                    raise AssertionError(f"capture exited early:\n{process.log}")
                return conn.execute(
                    "SELECT 1 FROM pg_replication_slots"
                    " WHERE database = current_database() AND active"
                ).fetchone() is not None

            wait_for(active, "capture's slot to be active")
        yield process
    finally:
        process.cleanup()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PGSIFT, *args], capture_output=True, text=True, timeout=WAIT_S,
        env={**os.environ, **(env or {})}, check=False,
    )


def feed(redis_url: str, database: str) -> list[FeedEntry]:
    """The whole feed of `database`, in order."""
    reader = FeedReader(redis.Redis.from_url(redis_url), database)
    entries: list[FeedEntry] = []
    cursor: str | None = None
    try:
        while page := reader.read_after(cursor, count=1000):
            entries += page
            cursor = page[-1].id
    finally:
        reader.close()
    return entries


def feed_length(redis_url: str, database: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(keys.feed_stream(database)))
    finally:
        client.close()


def heartbeat(redis_url: str, database: str) -> HeartbeatReading:
    """Capture's heartbeat of `database` as a gateway reads it."""
    client = redis.Redis.from_url(redis_url)
    try:
        value, pttl, newest = client.eval(  # type: ignore[no-untyped-call]
            READ_SCRIPT, 2, keys.capture_heartbeat(database), keys.feed_stream(database)
        )
    finally:
        client.close()
    return parse_reading(value, int(pttl), newest)


@contextlib.contextmanager
def redis_full(redis_url: str) -> Iterator[None]:
    """Redis past its maxmemory: every write refused (OOM), every read still served."""
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory", 1)
    try:
        yield
    finally:
        client.config_set("maxmemory", 0)
        client.close()
