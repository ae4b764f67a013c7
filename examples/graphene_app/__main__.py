"""`python -m examples.graphene_app`: the example app with pgsift mounted, on :8000.

Needs PGSIFT_DATABASE_URL and PGSIFT_REDIS_URL, and `pgsift capture` running
for the same database (README.md of this folder).
"""

from __future__ import annotations

import argparse

import uvicorn

from examples.graphene_app.app import app
from examples.todos import CONFIG
from examples.todos.store import apply_schema
from pgsift.middleware.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = load_settings(CONFIG)
    if settings.database_url is None or settings.redis_url is None:
        parser.error("set PGSIFT_DATABASE_URL and PGSIFT_REDIS_URL")
    apply_schema(settings.database_url)
    uvicorn.run(app(settings), host=settings.host, port=args.port)


if __name__ == "__main__":
    main()
