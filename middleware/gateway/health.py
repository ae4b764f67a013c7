"""`GET /healthz`: 200 when every check passes, else 503 naming each failing check and why.

Checks are small functions returning a `HealthCheck`; the endpoint runs them
all, so an operator sees every reason at once, not only the first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from pgsift.middleware.feed.freshness import FeedFreshness


@dataclass(frozen=True)
class HealthCheck:
    name: str
    ok: bool
    reason: str = ""


async def healthz(request: Request) -> JSONResponse:
    service = request.app.state.service
    checks = [await serving(service), freshness(service.freshness)]
    failing = [check for check in checks if not check.ok]
    body: dict[str, Any] = {
        "status": "unavailable" if failing else "ok",
        "checks": [asdict(check) for check in checks],
    }
    if failing:
        body["reason"] = "; ".join(f"{check.name}: {check.reason}" for check in failing)
    return JSONResponse(body, status_code=503 if failing else 200)


async def serving(service: Any) -> HealthCheck:
    """Connected to Postgres and Redis, and tailing the feed."""
    if await service.ready():
        return HealthCheck("gateway", True)
    return HealthCheck(
        "gateway", False, "not connected to Postgres and Redis, or not tailing the feed"
    )


def freshness(view: FeedFreshness) -> HealthCheck:
    """This gateway has seen every transaction up to a few seconds ago (capture's heartbeat)."""
    problem = view.problem()
    return HealthCheck("feed_freshness", problem is None, problem or "")
