"""`GET /healthz`: named checks, each ok or failing with a reason; 200 only when all are ok.

    {"status": "ok" | "unavailable",
     "checks": [{"name": "postgres", "ok": true, "reason": null}, ...],
     "reason": "feed freshness: ...; ..."}      only when unavailable: every failing check

A check is a name and a probe: an async callable that returns None when all is
well, else the reason (an exception's message counts as the reason too). Every
probe gets at most `PROBE_TIMEOUT_S`, so a stuck dependency makes `/healthz`
answer "unavailable", not hang. The gateway's checks are listed in
`gateway_checks`; a new one goes there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from pgsift.middleware.gateway.service import SyncService

PROBE_TIMEOUT_S = 2.0

Probe = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One line of `/healthz`: `probe()` is None when ok, else why not."""

    name: str
    probe: Probe

    async def run(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                reason = await self.probe()
        except TimeoutError:
            reason = f"no answer within {PROBE_TIMEOUT_S:g} s"
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        return {"name": self.name, "ok": reason is None, "reason": reason}


def gateway_checks(service: SyncService) -> list[HealthCheck]:
    """What `pgsift serve` needs to be of use: its databases, delivery keeping up with
    the feed, the feed keeping up with Postgres (capture's heartbeat), and a snapshot
    connection coming free now and then (`SnapshotConnections.problem`)."""
    return [
        HealthCheck("postgres", service.probe_postgres),
        HealthCheck("redis", service.probe_redis),
        HealthCheck("feed tailer", service.probe_tailer),
        HealthCheck("feed lag", service.watchdog.probe),
        HealthCheck("feed freshness", service.probe_freshness),
        HealthCheck("snapshot connections", service.probe_snapshot_connections),
    ]


async def run_checks(checks: Sequence[HealthCheck]) -> tuple[bool, list[dict[str, Any]]]:
    """Every check's line (run together), and whether all are ok."""
    lines = list(await asyncio.gather(*(check.run() for check in checks)))
    return all(line["ok"] for line in lines), lines


async def healthz(request: Request) -> JSONResponse:
    ok, lines = await run_checks(request.app.state.health_checks)
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": lines}
    if not ok:
        body["reason"] = "; ".join(
            f"{line['name']}: {line['reason']}" for line in lines if not line["ok"]
        )
    return JSONResponse(body, status_code=200 if ok else 503)
