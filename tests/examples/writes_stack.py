"""Real parts for the write path's end-to-end tests: a gateway process that can be killed
with SIGKILL and started again, and a TCP proxy in front of it that can hold the
gateway's answers to `POST /v1/mutate` (and everything else it sends meanwhile, the
`sync` stream's confirmations included), so a test can kill the gateway after a
commit and before the client has heard of it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from pgsift.middleware.embedded.ports import free_port
from tests.examples.stack import EXAMPLE_CONFIG, ROOT, eventually

# A mutator that writes and then raises (not a refusal): the extra mutator of these tests.
EXTRA_MUTATORS = """
[mutators.explode]
function = "tests.examples.writes_app:explode"
"""


def config_with_explode(directory: Path) -> Path:
    """The example's config plus `explode`."""
    path = directory / "pgsift.toml"
    path.write_text(EXAMPLE_CONFIG.read_text() + EXTRA_MUTATORS)
    return path


class GatewayProcess:
    """`python -m examples.web.server` (the whole gateway) on a port of its own."""

    def __init__(self, database_url: str, redis_url: str, config: Path = EXAMPLE_CONFIG) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "examples.web.server", "--database-url", database_url,
             "--redis-url", redis_url, "--port", str(self.port), "--config", str(config)],
            cwd=ROOT, stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{self.port}"

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.process.returncode}")
            try:
                return httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(healthy, "the gateway is healthy")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no answer flushed."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Proxy:
    """Forwards TCP connections to `target_port`; while `hold_answers` is set, what the
    gateway sends back is dropped, and nothing after it on that connection is delivered."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hold_answers = False
        self.held = asyncio.Event()  # a mutate request went through while holding
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        holding = [False]

        async def requests() -> None:
            while data := await reader.read(65536):
                if self.hold_answers and data.startswith(b"POST /v1/mutate"):
                    self.held.set()
                upstream_writer.write(data)
                await upstream_writer.drain()
            upstream_writer.close()

        async def answers() -> None:
            while data := await upstream_reader.read(65536):
                holding[0] = holding[0] or self.hold_answers
                if not holding[0]:
                    writer.write(data)
                    await writer.drain()

        try:
            pipes = [asyncio.create_task(requests()), asyncio.create_task(answers())]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            for side in (writer, upstream_writer):
                with contextlib.suppress(Exception):
                    side.close()
            self._tasks.discard(task)
