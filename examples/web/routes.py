"""The demo page's routes, mounted into the gateway app by `pgsift demo`.

    app = create_app(settings, routes=web_routes(settings.database_url))

`/` is the page, `/web/<file>` its scripts and styles, `/demo/users` the demo's
sign-in: a few users of the issue tracker with a fresh token each. That endpoint
hands out tokens to anyone who asks — it exists only in the demo.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from examples.issue_tracker.auth import DEMO_SECRET, demo_users, issue_token

WEB_DIR = Path(__file__).parent
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Only the page's own files are served, never the Python next to them.
FILES = frozenset(path.name for path in WEB_DIR.iterdir() if path.suffix in MEDIA_TYPES)


def web_routes(
    database_url: str, *, secret: str = DEMO_SECRET, users: int = 8
) -> list[BaseRoute]:
    """Routes serving the page and the demo users' tokens (signed with `secret`)."""

    async def page(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", media_type=MEDIA_TYPES[".html"])

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in FILES:
            raise HTTPException(404)
        path = WEB_DIR / name
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])

    def signed_in_users() -> list[dict[str, object]]:
        with psycopg.connect(database_url) as conn:
            found = demo_users(conn, limit=users)
        # No e-mail addresses: the policies keep them from every client too.
        return [
            {"id": user.id, "name": user.name, "team_ids": list(user.team_ids),
             "token": issue_token(user, secret=secret)}
            for user in found
        ]

    async def users_endpoint(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(signed_in_users))

    return [
        Route("/", page),
        Route("/web/{name}", asset),
        Route("/demo/users", users_endpoint),
    ]
