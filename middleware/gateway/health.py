"""`GET /healthz`: 200 only when connected to Postgres and Redis and tailing the feed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse


async def healthz(request: Request) -> JSONResponse:
    service = request.app.state.service
    if await service.ready():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable"}, status_code=503)
