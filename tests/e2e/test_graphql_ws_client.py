"""The official `graphql-ws` npm client (node) against `pgsift serve` and the graphene adapter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pgsift.middleware.gateway.client import LocalCopy
from tests.e2e.gateways import pgsift_serve
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    GRAPHENE_SCHEMA,
    ISSUES_SCHEMA,
    WAIT_S,
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")
QUERY = "SELECT id, title, status FROM issues WHERE team_id = $1"
ORACLE = "SELECT id, title, status FROM issues WHERE team_id = %s"
GOOD = token({"sub": "node", "team_ids": [1]})


class NodeClient:
    """`node sync_client.mjs`: its events, and the copy its `next` payloads add up to."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.copy = LocalCopy()
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, url: str, authorization: str | None, query: str, **more: Any
    ) -> NodeClient:
        if NODE is None or not (JS / "node_modules" / "graphql-ws").exists():
            pytest.fail("node and tests/e2e/js/node_modules are needed (.ci/setup runs npm ci)")
        options = {"url": url, "authorization": authorization, "query": query, **more}
        process = await asyncio.create_subprocess_exec(
            NODE, str(JS / "sync_client.mjs"), json.dumps(options), stdout=subprocess.PIPE
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["type"] == "next" and event["payload"].get("data"):
                self.copy.apply(event["payload"]["data"]["sync"])
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


@pytest.fixture(params=["strawberry", "graphene"])
async def gateway(
    request: pytest.FixtureRequest, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[str]:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'one'), (2, 2, 'two')",
    )
    with capturing(database_url, redis_url):
        if request.param == "strawberry":
            with pgsift_serve(database_url, redis_url, tmp_path) as url:
                yield url
        else:
            settings = gateway_settings(database_url, redis_url)
            async with serve(settings, graphene_schema=GRAPHENE_SCHEMA) as url:
                yield url


async def test_snapshot_then_live_changes(gateway: str, database_url: str) -> None:
    client = await NodeClient.start(gateway, GOOD, QUERY, params=[1])
    try:
        await eventually(lambda: client.copy.up_to_date, "upToDate")
        await execute(database_url, "INSERT INTO issues (id, team_id, title) VALUES (3, 1, 'x')")
        await execute(database_url, "UPDATE issues SET team_id = 1 WHERE id = 2")
        await execute(database_url, "DELETE FROM issues WHERE id = 1")

        async def converged() -> bool:
            return client.copy.rows == await expected(database_url, ORACLE, [1])

        await eventually(converged, "node client converged")
        cursor = client.copy.cursor
    finally:
        await client.stop()
    await execute(database_url, "UPDATE issues SET title = 'later' WHERE id = 3")
    resumed = await NodeClient.start(gateway, GOOD, QUERY, params=[1], cursor=cursor)
    try:
        # The update reaches the feed before or after the resumed catch-up ends.
        await eventually(
            lambda: resumed.copy.up_to_date
            and [r["title"] for r in resumed.copy.rows.values()] == ["later"],
            "resumed and updated",
        )
        ops = [c["op"] for e in resumed.events for c in e["payload"]["data"]["sync"]["changes"]]
        assert ops == ["UPDATE"]
    finally:
        await resumed.stop()


async def test_rejected_token_closes_4403(gateway: str) -> None:
    client = await NodeClient.start(gateway, token({"team_ids": [1]}, expires_in=-10), QUERY)
    events = await client.finished()
    assert events[-1]["type"] == "closed" and events[-1]["code"] == 4403


async def test_query_error_is_a_graphql_error(gateway: str) -> None:
    client = await NodeClient.start(gateway, GOOD, "SELECT id, secret FROM issues")
    events = await client.finished()
    # As the reference server does for a failing subscription: `next` with errors, `complete`.
    assert [e["type"] for e in events] == ["next", "complete"]
    error = events[0]["payload"]["errors"][0]
    assert "secret" in error["message"]
    assert error["extensions"]["position"] == len("SELECT id, ")


BIG_KEY = 2**53 + 1  # a JavaScript number cannot hold it: 2**53 + 1 reads as 2**53
POINTS = "1234567890123456789012345678901234567890.5"  # 41 digits: far past a double
EXACT_QUERY = "SELECT id, title, points FROM issues WHERE team_id = $1"


async def test_int8_keys_and_numerics_arrive_exact_in_raw_frames(
    gateway: str, database_url: str
) -> None:
    """The official client reads the raw frames: the wire form of a key above 2**53
    and of a 41-digit numeric is exact, and the web page's decoder restores both."""
    await execute(
        database_url,
        f"INSERT INTO issues (id, team_id, title, points) VALUES ({BIG_KEY}, 1, 'big', {POINTS})",
    )
    client = await NodeClient.start(gateway, GOOD, EXACT_QUERY, params=[1], raw=True)
    try:
        await eventually(lambda: client.copy.up_to_date, "upToDate")
        live = BIG_KEY + 2  # also one that arrives live, through capture
        await execute(
            database_url,
            "INSERT INTO issues (id, team_id, title, points)"
            f" VALUES ({live}, 1, 'live', -{POINTS})",
        )
        await eventually(lambda: len(client.copy.rows) == 3, "the live insert")
    finally:
        await client.stop()
    frames = "\n".join(e["data"] for e in client.events if e["type"] == "raw")
    assert f'"id":"{BIG_KEY}"' in frames.replace(" ", "")
    assert f'"points":"{POINTS}"' in frames.replace(" ", "")
    assert f'"points":"-{POINTS}"' in frames.replace(" ", "")
    first = next(e for e in client.events if e["type"] == "next")
    assert first["payload"]["data"]["sync"]["types"] == {
        "id": "int8", "title": "text", "points": "numeric"
    }
    rows = {
        change["key"]["id"]["text"]: change["row"]
        for event in client.events if event["type"] == "decoded"
        for change in event["changes"]
    }
    assert rows[str(BIG_KEY)]["id"] == {"js": "bigint", "text": str(BIG_KEY)}
    assert rows[str(BIG_KEY)]["points"] == {"js": "string", "text": POINTS}
    assert rows[str(live)]["id"] == {"js": "bigint", "text": str(live)}
    assert rows[str(live)]["points"] == {"js": "string", "text": f"-{POINTS}"}
    assert client.copy.rows == await expected(database_url, EXACT_QUERY.replace("$1", "%s"), [1])
