"""`pgsift serve` as real processes for tests/e2e: started, waited for, killed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from pgsift.middleware.embedded.ports import free_port
from tests.middleware.gateway.harness import POLICIES, SECRET, WAIT_S

PGSIFT = str(Path(sys.executable).with_name("pgsift"))


def toml_table(name: str, table: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def write_config(directory: Path) -> Path:
    """A pgsift.toml with the tests' JWT secret and issue policies."""
    config = directory / "pgsift.toml"
    config.write_text(
        toml_table("auth", {"jwt_secret": SECRET})
        + "".join(toml_table(f'policies."{t}"', p) for t, p in POLICIES.items()),
        encoding="utf-8",
    )
    return config


class GatewayProcess:
    """One `pgsift serve` subprocess on a free port; its log goes to a temp file."""

    def __init__(
        self, database_url: str, redis_url: str, config: Path, *args: str, **settings: str
    ) -> None:
        self.port = free_port()
        self.argv = [
            PGSIFT, "serve", "--database-url", database_url, "--redis-url", redis_url,
            "--port", str(self.port), "--config", str(config), *args,
        ]
        self.env = {**os.environ, **{f"PGSIFT_{k.upper()}": v for k, v in settings.items()}}
        self.log_path = Path(tempfile.mkstemp(prefix="pgsift-serve-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env,
            )
        return self

    def wait_ready(self) -> None:
        """Until /healthz answers 200 (a hang guard of WAIT_S, not a timing assertion)."""
        deadline = time.monotonic() + WAIT_S
        with httpx.Client() as http:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"pgsift serve exited:\n{self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgsift serve never became ready:\n{self.log}")
                time.sleep(0.05)

    def children(self) -> set[int]:
        """The pids of this process's children (`serve --workers`' gateway processes)."""
        if self.process is None:
            return set()
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[1]) == self.process.pid:
                    found.add(int(stat.parent.name))
        return found

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as when a machine dies."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def gateways(
    count: int, database_url: str, redis_url: str, directory: Path, **settings: str
) -> Iterator[list[GatewayProcess]]:
    """`count` `pgsift serve` processes on the same Postgres and Redis, all ready."""
    config = write_config(directory)
    started = [
        GatewayProcess(database_url, redis_url, config, **settings) for _ in range(count)
    ]
    try:
        for gateway in started:
            gateway.start()
        for gateway in started:
            gateway.wait_ready()
        yield started
    finally:
        for gateway in started:
            gateway.cleanup()


@contextlib.contextmanager
def pgsift_serve(database_url: str, redis_url: str, directory: Path) -> Iterator[str]:
    """One `pgsift serve`; its ws:// URL once /healthz says ready."""
    with gateways(1, database_url, redis_url, directory) as (gateway,):
        yield gateway.url
