"""`GET /v1/bootstrap` cannot exhaust Postgres: live bootstraps take their connection from
the gateway's bounded snapshot pool (or get a 503 with `Retry-After`), a caller has at
most `bootstrap_max_per_caller` of them at once (429), and a client that stops reading or
goes away gives its connection (and its dump lease) back at once.

Real servers throughout: Postgres, Redis, the gateway under uvicorn, and HTTP clients
that stop reading (sockets with a tiny receive buffer that read the response's head and
nothing more). Every wait polls a condition up to a deadline; nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
import redis
from rq import Queue

from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE
from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.settings import Settings
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    POLICIES,
    WAIT_S,
    eventually,
    gateway_settings,
    serving,
    token,
)
from tests.middleware.gateway.pgrows import execute

# Rows of ~250 bytes: a response is far bigger than every socket buffer between the
# gateway and a client that stopped reading, so the gateway's writes stall.
ROWS = 60_000
QUERY = "SELECT id, team_id, title FROM issues"
SMALL_QUERY = "SELECT id, team_id, title FROM issues WHERE id <= 10"
CALLER_A = token({"sub": "a", "team_ids": [1]})
CALLER_B = token({"sub": "b", "team_ids": [1]})
POOL = 3


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        f"INSERT INTO issues (id, team_id, title) SELECT i, 1, repeat('x', 200) "
        f"FROM generate_series(1, {ROWS}) i",
    )
    return database_url


def limited(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "gateway_snapshot_connections": POOL,
        "bootstrap_wait_s": 0.2,
        "gateway_snapshot_busy_s": 0.2,
    }
    values.update(overrides)
    return gateway_settings(database_url, redis_url, **values)


@dataclass
class Gateway:
    base: str
    settings: Settings
    http: httpx.AsyncClient


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    app = create_app(settings, batch_loader=False)
    async with serving(app, settings) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=WAIT_S) as http:
            yield Gateway(base, settings, http)


class StalledClient:
    """An HTTP client that sends a bootstrap request, reads the response's head, and then
    reads nothing more (its receive buffer is as small as the kernel allows)."""

    def __init__(self, base: str, authorization: str, query: str = QUERY) -> None:
        self.base = base
        self.authorization = authorization
        self.query = query
        self.status = 0
        self.head: dict[str, str] = {}
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> StalledClient:
        host, port = self.base.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, self._writer = await asyncio.open_connection(sock=sock, limit=4096)
        target = "/v1/bootstrap?" + urlencode({"query": self.query, "params": "[]"})
        self._writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {self.authorization}"
            "\r\nAccept-Encoding: identity\r\n\r\n".encode()
        )
        await self._writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        self.status = int(head[0].split()[1])
        for line in head[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.head[name.strip().lower()] = value.strip()
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def stall(gw: Gateway, count: int, authorization: str = CALLER_A,
                query: str = QUERY) -> list[StalledClient]:
    """`count` stalled clients, opened one after another."""
    return [await StalledClient(gw.base, authorization, query).open() for _ in range(count)]


async def snapshot_backends(database_url: str) -> tuple[int, int]:
    """(backends of the database in a transaction, backends of the database), not ours."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FILTER (WHERE xact_start IS NOT NULL), count(*) "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def in_transaction(database_url: str) -> int:
    return (await snapshot_backends(database_url))[0]


async def metric(gw: Gateway, name: str, **labels: str) -> float:
    """One sample of `/metrics` (0 when absent; labels print in name order)."""
    text = (await gw.http.get("/metrics")).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                   if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


async def health_check(gw: Gateway, name: str) -> dict[str, Any]:
    body = (await gw.http.get("/healthz")).json()
    [line] = [c for c in body["checks"] if c["name"] == name]
    return dict(line)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    await eventually(check, what)


def redis_state(redis_url: str, database: str) -> tuple[Any, ...]:
    """What a bootstrap request may change in Redis: popularity and the build queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        return (
            client.zrange(keys.popular_shapes(database), 0, -1, withscores=True),
            Queue(DUMPS_QUEUE, connection=client).count,
        )
    finally:
        client.close()


async def test_stalled_bootstraps_hold_at_most_the_pool_and_others_get_a_clear_503(
    issues: str, redis_url: str
) -> None:
    settings = limited(issues, redis_url, bootstrap_max_per_caller=100)
    async with gateway(settings) as gw:
        clients = await stall(gw, POOL)
        try:
            before = redis_state(redis_url, keys_database(settings))
            clients += await stall(gw, 5)
            served = [c for c in clients if c.status == 200]
            refused = [c for c in clients if c.status != 200]
            assert len(served) == POOL
            assert {c.status for c in refused} == {503}
            assert all(c.head.get("retry-after", "").isdigit() for c in refused)
            in_tx, total = await snapshot_backends(issues)
            # The pool is the bound: no backend past it (Postgres' max_connections is far).
            assert in_tx <= POOL and total <= POOL + 2, (in_tx, total)

            # Another caller is answered at once, with a clear error it can act on.
            response = await gw.http.get(
                "/v1/bootstrap", params={"query": SMALL_QUERY},
                headers={"Authorization": CALLER_B},
            )
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1
            assert "busy" in response.json()["error"]
            assert "bootstrap_wait_s" in response.json()["error"]
            # Refused: not counted as popular, no dump build asked for.
            assert redis_state(redis_url, keys_database(settings)) == before

            async def reported() -> bool:
                line = await health_check(gw, "snapshot connections")
                return not line["ok"] and "busy" in str(line["reason"])

            await until(reported, "/healthz reports the exhausted pool")
            assert (await gw.http.get("/healthz")).status_code == 503
            assert await metric(gw, "pgsift_gateway_bootstraps_in_flight") == POOL
            refusals = await metric(gw, "pgsift_gateway_bootstrap_refusals_total",
                                    reason="no_connection")
            assert refusals == len(refused) + 1
        finally:
            for client in clients:
                await client.close()

        async def released() -> bool:
            return await in_transaction(issues) == 0

        await until(released, "no backend left in a transaction once the sockets closed")

        async def in_flight_none() -> bool:
            return await metric(gw, "pgsift_gateway_bootstraps_in_flight") == 0

        await until(in_flight_none, "no bootstrap in flight")

        async def healthy() -> bool:
            return bool((await health_check(gw, "snapshot connections"))["ok"])

        await until(healthy, "/healthz ok again")
        # And the pool serves again: a whole bootstrap, complete.
        response = await gw.http.get("/v1/bootstrap", params={"query": SMALL_QUERY},
                                     headers={"Authorization": CALLER_B})
        assert response.status_code == 200
        *_, end = (json.loads(line) for line in response.text.splitlines())
        assert end["type"] == "end" and end["count"] == 10


async def test_one_caller_is_capped_and_a_refused_request_changes_nothing(
    issues: str, redis_url: str
) -> None:
    settings = limited(issues, redis_url, bootstrap_max_per_caller=2)
    async with gateway(settings) as gw:
        database = keys_database(settings)
        clients = await stall(gw, 2)
        try:
            assert [c.status for c in clients] == [200, 200]
            before = redis_state(redis_url, database), await snapshot_backends(issues)
            extra = await stall(gw, 3)
            clients += extra
            assert [c.status for c in extra] == [429, 429, 429]
            assert all(c.head.get("retry-after", "").isdigit() for c in extra)
            response = await gw.http.get("/v1/bootstrap", params={"query": QUERY},
                                         headers={"Authorization": CALLER_A})
            assert response.status_code == 429
            error = response.json()["error"]
            assert "2 bootstraps" in error and "bootstrap_max_per_caller" in error
            # Refused before anything was read or counted: no popularity, no build, no backend.
            after = redis_state(redis_url, database), await snapshot_backends(issues)
            assert after == before
            assert await metric(gw, "pgsift_gateway_bootstrap_refusals_total",
                                reason="per_caller") == 4

            # Another caller still gets its rows, all of them.
            response = await gw.http.get("/v1/bootstrap", params={"query": QUERY},
                                         headers={"Authorization": CALLER_B})
            assert response.status_code == 200
            lines = response.text.splitlines()
            assert json.loads(lines[-1]) == {"type": "end", "count": ROWS,
                                             "cursor": json.loads(lines[0])["cursor"]}
        finally:
            for client in clients:
                await client.close()

        async def released() -> bool:
            return await in_transaction(issues) == 0

        await until(released, "no backend left in a transaction")
        # The cap counts bootstraps in flight: once they ended, the caller may again.
        response = await gw.http.get("/v1/bootstrap", params={"query": SMALL_QUERY},
                                     headers={"Authorization": CALLER_A})
        assert response.status_code == 200


async def run_jobs_apart(redis_url: str) -> None:
    """Work the queued jobs in a process of their own (RQ wants a main thread, and the
    build an event loop of its own), with this test's environment."""
    script = ("import redis, sys; from tests.workers.conftest import run_jobs; "
              "run_jobs(redis.Redis.from_url(sys.argv[1]))")
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, redis_url)
    assert await child.wait() == 0


def keys_database(settings: Settings) -> str:
    from pgsift.middleware.feed.keys import database_of

    assert settings.database_url is not None
    return database_of(settings.database_url)


async def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(
    issues: str, redis_url: str
) -> None:
    settings = limited(issues, redis_url, bootstrap_write_timeout_s=0.5)
    async with gateway(settings) as gw:
        clients = await stall(gw, POOL)
        try:
            assert [c.status for c in clients] == [200] * POOL

            async def released() -> bool:
                return await in_transaction(issues) == 0

            # The sockets are still open: the write timeout, not a disconnect, ended them.
            await until(released, "the stalled clients' transactions ended")

            async def in_flight_none() -> bool:
                return await metric(gw, "pgsift_gateway_bootstraps_in_flight") == 0

            await until(in_flight_none, "no bootstrap in flight")
            assert await metric(gw, "pgsift_gateway_bootstraps_cut_total",
                                reason="write_timeout") == POOL
        finally:
            for client in clients:
                await client.close()


async def test_a_stalled_dump_bootstrap_releases_its_lease_and_counts_by_source(
    issues: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The dump build runs here, configured as the gateway is (policies included).
    monkeypatch.setenv("PGSIFT_DATABASE_URL", issues)
    monkeypatch.setenv("PGSIFT_REDIS_URL", redis_url)
    config = tmp_path / "pgsift.toml"
    config.write_text('[policies."public.issues"]\n'
                      f'columns = {json.dumps(POLICIES["public.issues"]["columns"])}\n'
                      f'row = {json.dumps(POLICIES["public.issues"]["row"])}\n')
    monkeypatch.setenv("PGSIFT_CONFIG", str(config))
    settings = limited(issues, redis_url, bootstrap_write_timeout_s=0.5)
    async with gateway(settings) as gw:
        live = await gw.http.get("/v1/bootstrap", params={"query": QUERY},
                                 headers={"Authorization": CALLER_A})
        assert live.headers["x-pgsift-source"] == "live"
        await run_jobs_apart(redis_url)
        clients = await stall(gw, 2)
        try:
            assert [c.head["x-pgsift-source"] for c in clients] == ["dump", "dump"]

            async def in_flight_none() -> bool:
                return await metric(gw, "pgsift_gateway_bootstraps_in_flight") == 0

            await until(in_flight_none, "the stalled dump bootstraps ended")
        finally:
            for c in clients:
                await c.close()
        assert await metric(gw, "pgsift_gateway_snapshots_total",
                            source="postgres", endpoint="bootstrap") == 1
        assert await metric(gw, "pgsift_gateway_bootstraps_cut_total",
                            reason="write_timeout") == 2
        # Served in full from the dump: counted by source too.
        response = await gw.http.get("/v1/bootstrap", params={"query": QUERY},
                                     headers={"Authorization": CALLER_A})
        assert response.headers["x-pgsift-source"] == "dump"

        async def counted() -> bool:  # counted once the response has ended, just after
            return await metric(gw, "pgsift_gateway_snapshots_total",
                                source="dump", endpoint="bootstrap") == 1

        await until(counted, "the dump bootstrap counted by source")


async def test_a_client_that_disconnects_gives_its_connection_back_at_once(
    issues: str, redis_url: str
) -> None:
    # No write timeout, no idle_in_transaction_session_timeout: only the disconnect can
    # end them.
    settings = limited(issues, redis_url, bootstrap_write_timeout_s=0.0,
                       gateway_snapshot_idle_timeout_s=0.0)
    async with gateway(settings) as gw:
        clients = await stall(gw, POOL)
        assert [c.status for c in clients] == [200] * POOL
        assert await in_transaction(issues) == POOL
        for client in clients:
            await client.close()

        async def released() -> bool:
            return await in_transaction(issues) == 0

        await until(released, "the disconnected clients' transactions ended")
