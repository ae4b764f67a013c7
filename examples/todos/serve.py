"""Run one of the example apps (pgsift mounted in it) on a port: the body of both `__main__`s.

Needs PGSIFT_DATABASE_URL and PGSIFT_REDIS_URL, and `pgsift capture` running for
the same database (README.md of each app's folder).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp

from examples.todos import CONFIG
from examples.todos.store import apply_schema
from pgsift.middleware.settings import Settings, load_settings


def serve(description: str, app: Callable[[Settings], ASGIApp]) -> None:
    """Parse `--port`, apply the todos schema, and serve `app(settings)` with uvicorn."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = load_settings(CONFIG)
    if settings.database_url is None or settings.redis_url is None:
        parser.error("set PGSIFT_DATABASE_URL and PGSIFT_REDIS_URL")
    apply_schema(settings.database_url)
    uvicorn.run(app(settings), host=settings.host, port=args.port)
