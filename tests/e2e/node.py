"""node for the end-to-end tests: the official graphql-ws client and the npm tools.

`NodeClient` drives `js/sync_client.mjs` (the `graphql-ws` client) through one
subscription and keeps the copy its messages add up to; `run_tool` runs a tool
of `js/node_modules/.bin` (graphql-codegen, tsc). `.ci/setup` installs them
(`npm ci` in tests/e2e/js).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pgsift.middleware.gateway.client import LocalCopy
from tests.middleware.gateway.harness import WAIT_S

JS = Path(__file__).parent / "js"
TYPED = JS / "typed"
NODE = shutil.which("node")
TIMEOUT_S = 300


class NodeClient:
    """`node sync_client.mjs`: its events, and the copy its `next` payloads add up to."""

    def __init__(self, process: asyncio.subprocess.Process, field: str = "sync") -> None:
        self.process = process
        self.field = field  # the subscription field whose messages make the copy
        self.events: list[dict[str, Any]] = []
        self.copy = LocalCopy()
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, url: str, authorization: str | None, query: str, **more: Any
    ) -> NodeClient:
        """A `sync(query, ...)` subscription (`more`: params, cursor, raw)."""
        return await cls._run({"url": url, "authorization": authorization, "query": query,
                               **more}, "sync")  # fmt: skip

    @classmethod
    async def subscribe(
        cls, url: str, authorization: str | None, document: str, field: str,
        variables: dict[str, Any] | None = None,
    ) -> NodeClient:
        """Any subscription `document` (a typed one), following the messages of `field`."""
        options = {"url": url, "authorization": authorization, "document": document,
                   "variables": variables or {}}  # fmt: skip
        return await cls._run(options, field)

    @classmethod
    async def _run(cls, options: dict[str, Any], field: str) -> NodeClient:
        if NODE is None or not (JS / "node_modules" / "graphql-ws").exists():
            pytest.fail("node and tests/e2e/js/node_modules are needed (.ci/setup runs npm ci)")
        process = await asyncio.create_subprocess_exec(
            NODE, str(JS / "sync_client.mjs"), json.dumps(options), stdout=subprocess.PIPE
        )
        return cls(process, field)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["type"] == "next" and event["payload"].get("data"):
                self.copy.apply(event["payload"]["data"][self.field])
        self.ended.set()

    async def finished(self) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.ended.wait(), WAIT_S)
        await self.process.wait()
        return self.events

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        await self.process.wait()
        self._task.cancel()


def run_tool(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    binary = JS / "node_modules" / ".bin" / tool
    env = {**os.environ, "NO_COLOR": "1", "CI": "1"}
    return subprocess.run(
        [NODE, str(binary.resolve()), *args],
        cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False,
    )  # fmt: skip
