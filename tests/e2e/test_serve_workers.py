"""`pgsift serve --workers 2`: two gateway processes on one port, each tailing the feed.

Each worker is killed in turn with SIGKILL while transactions are committed;
the supervisor starts a new one, and the clients, reconnecting to the same
port with their last cursor, converge to Postgres with no transaction twice
(`tests.e2e.resuming`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.e2e.gateways import GatewayProcess, write_config
from tests.e2e.resuming import IssueWriter, ResumingClient
from tests.e2e.test_several_gateways import AUTHORIZATION, QUERY, TEAMS, clients_converge
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import ISSUES_SCHEMA, eventually
from tests.middleware.gateway.pgrows import execute

CLIENTS = 6


async def test_killed_workers_are_replaced_and_their_clients_resume(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title)"
        " SELECT i, 1 + i % 3, 'issue ' || i FROM generate_series(1, 30) AS i",
    )
    writer = IssueWriter(database_url, teams=TEAMS, seed=6, first_id=30)
    writer.ids = list(range(1, 31))
    server = GatewayProcess(
        database_url, redis_url, write_config(tmp_path), "--workers", "2"
    )
    with capturing(database_url, redis_url):
        try:
            server.start()
            server.wait_ready()
            await eventually(lambda: len(server.children()) == 2, "two gateway workers")
            first = server.children()
            teams = [1 + i % TEAMS for i in range(CLIENTS)]
            clients = [
                await ResumingClient.start([server.url], AUTHORIZATION, QUERY, [team])
                for team in teams
            ]
            try:
                await clients_converge(clients, teams, database_url)
                seen = set(first)
                for worker in sorted(first):
                    writing = asyncio.create_task(writer.run(30))
                    target = writer.committed + 15
                    await eventually(lambda t=target: writer.committed >= t, "15 transactions")
                    os.kill(worker, signal.SIGKILL)
                    await writing

                    def replaced(worker: int = worker) -> bool:
                        now = server.children()
                        return len(now) == 2 and worker not in now

                    await eventually(replaced, f"a worker in place of {worker}")
                    seen |= server.children()
                    await clients_converge(clients, teams, database_url)
                assert len(seen) == 4
                for index, client in enumerate(clients):
                    assert client.problems == [], f"client {index}: {client.problems}"
                    # Every client was on one of the two killed workers, and resumed.
                    (_, none), *later = client.subscriptions
                    assert none is None and later
                    assert all(cursor is not None for _, cursor in later)
            finally:
                for client in clients:
                    await client.stop()
            workers = server.children()
            server.stop()
            assert server.process is not None and server.process.returncode == 0
            assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
        finally:
            server.cleanup()
