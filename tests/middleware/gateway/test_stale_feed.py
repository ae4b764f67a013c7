"""While capture cannot append (Redis full), the gateway says so and the loader reads Postgres.

The case from the field: a row moved from org 1 to org 2 while the feed was not
advancing; the batch loader kept answering org 1 with the row from its cache.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.middleware.capture.processes import capturing, redis_full
from tests.middleware.gateway.harness import eventually, gateway_settings, serve, token
from tests.middleware.gateway.pgrows import execute

SCHEMA = """
CREATE TABLE docs (id int PRIMARY KEY, org_id int NOT NULL, title text, secret_note text);
ALTER TABLE docs REPLICA IDENTITY FULL;
INSERT INTO docs VALUES (1, 1, 'plan', 's1'), (2, 2, 'other', 's2');
"""
POLICIES = {"public.docs": {"columns": ["id", "org_id", "title"], "row": "org_id = auth.org_id"}}
STALE_AFTER_S = 2.0
ORG_1 = token({"sub": "a", "org_id": 1})
ORG_2 = token({"sub": "b", "org_id": 2})


async def test_a_stale_feed_turns_health_red_and_the_loader_reads_postgres(
    database_url: str, redis_url: str
) -> None:
    await execute(database_url, SCHEMA)
    settings = gateway_settings(
        database_url, redis_url, policies=POLICIES, feed_stale_after_s=STALE_AFTER_S
    )
    with capturing(database_url, redis_url):
        async with serve(settings) as url, httpx.AsyncClient(timeout=30) as http:
            base = url.replace("ws://", "http://").removesuffix("/graphql")

            async def row(authorization: str) -> Any:
                response = await http.post(f"{base}/v1/rows", json={"table": "docs", "keys": [1]},
                                           headers={"Authorization": authorization})
                assert response.status_code == 200, response.text
                return response.json()["rows"][0]

            async def health() -> tuple[int, dict[str, Any]]:
                response = await http.get(f"{base}/healthz")
                return response.status_code, response.json()

            await eventually(lambda: _status_is(health, 200), "a fresh feed")
            assert await row(ORG_1) == {"id": 1, "org_id": 1, "title": "plan"}  # now cached

            with redis_full(redis_url):
                await execute(database_url, "UPDATE docs SET org_id = 2 WHERE id = 1")
                await eventually(lambda: _status_is(health, 503), "the gateway to see it")
                _, report = await health()
                checks = {check["name"]: check for check in report["checks"]}
                serving = ("postgres", "redis", "feed tailer")
                assert all(checks[name]["ok"] for name in serving), report
                assert not checks["feed freshness"]["ok"]
                assert "heartbeat" in checks["feed freshness"]["reason"], report
                assert report["reason"].startswith("feed freshness: "), report
                metrics = (await http.get(f"{base}/metrics")).text
                assert _gauge(metrics, "pgsift_gateway_heartbeat_age_seconds") > STALE_AFTER_S

                # The cache still holds org 1's version; the loader must not serve it.
                assert await row(ORG_1) is None
                assert await row(ORG_2) == {"id": 1, "org_id": 2, "title": "plan"}

            await eventually(lambda: _status_is(health, 200), "fresh again once Redis has room")
            assert await row(ORG_1) is None


async def _status_is(health: Any, status: int) -> bool:
    return bool((await health())[0] == status)


def _gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")
