"""Several `pgsift serve` on one Postgres and Redis; one is killed, its clients move on.

Three gateways tail the same feed, on a plain Redis and on a three-master
Redis Cluster (`redis+cluster://`, RQ's queues on the plain Redis); six
official graphql-ws clients are spread across them. Random transactions are
committed before and after one gateway is killed with SIGKILL; its clients
reconnect to another gateway with their last cursor. Every client's copy must
end equal to Postgres's answer to its query, with no transaction twice and no
change out of place on the way (`tests.e2e.resuming`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pgsift.middleware.feed import keys
from pgsift.middleware.redis_clients import sync_redis
from tests.e2e.gateways import gateways
from tests.e2e.resuming import IssueWriter, ResumingClient
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import ISSUES_SCHEMA, eventually, token
from tests.middleware.gateway.pgrows import execute, expected

QUERY = "SELECT id, team_id, title FROM issues WHERE team_id = $1"
TEAMS = 3
GATEWAYS = 3
CLIENTS = 6
AUTHORIZATION = token({"sub": "e2e", "team_ids": list(range(1, TEAMS + 1))})


@pytest.fixture(params=["redis", "cluster"])
def feed_redis(request: pytest.FixtureRequest, redis_url: str) -> tuple[str, dict[str, str]]:
    """The Redis URL of the feed, and the settings the gateways need besides it."""
    if request.param == "redis":
        return redis_url, {}
    return request.getfixturevalue("redis_cluster_url"), {"jobs_redis_url": redis_url}


async def clients_converge(
    clients: list[ResumingClient], teams: list[int], database_url: str
) -> None:
    async def converged() -> bool:
        for client, team in zip(clients, teams, strict=True):
            if not client.up_to_date or client.rows != await expected(database_url, QUERY, [team]):
                return False
        return True

    await eventually(converged, "every client's copy equal to Postgres")


async def test_clients_of_a_killed_gateway_resume_on_another(
    database_url: str, feed_redis: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    redis_url, settings = feed_redis
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title)"
        " SELECT i, 1 + i % 3, 'issue ' || i FROM generate_series(1, 30) AS i",
    )
    writer = IssueWriter(database_url, teams=TEAMS, seed=11, first_id=30)
    writer.ids = list(range(1, 31))
    with capturing(database_url, redis_url), gateways(
        GATEWAYS, database_url, redis_url, tmp_path, **settings
    ) as servers:
        urls = [server.url for server in servers]
        teams = [1 + i % TEAMS for i in range(CLIENTS)]
        # Client i starts on gateway i % 3 and, when it dies, moves on to the next one.
        clients = [
            await ResumingClient.start(
                urls[i % GATEWAYS:] + urls[:i % GATEWAYS], AUTHORIZATION, QUERY, [teams[i]]
            )
            for i in range(CLIENTS)
        ]
        try:
            await clients_converge(clients, teams, database_url)
            # Killed while transactions are being committed, half of them before.
            writing = asyncio.create_task(writer.run(80))
            await eventually(lambda: writer.committed >= 40, "40 transactions committed")
            servers[0].kill()
            await writing
            await clients_converge(clients, teams, database_url)

            for index, client in enumerate(clients):
                assert client.problems == [], f"client {index}: {client.problems}"
                first, *later = client.subscriptions
                assert first == (urls[index % GATEWAYS], None)
                if index % GATEWAYS == 0:
                    # Resumed from a cursor on another gateway, never from scratch.
                    assert later and all(cursor is not None for _, cursor in later)
                    assert later[-1][0] != urls[0]
                else:
                    assert later == [], f"client {index} lost a live gateway: {later}"
            feed = sync_redis(redis_url)
            assert feed.xlen(keys.feed_stream(keys.database_of(database_url))) >= writer.committed
            feed.close()
        finally:
            for client in clients:
                await client.stop()
