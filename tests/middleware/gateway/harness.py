"""Real servers for gateway tests: capture as a subprocess, the gateway under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import graphene  # type: ignore[import-untyped]
import jwt
import uvicorn
from starlette.applications import Starlette

from pgsift.middleware.gateway.app import create_app
from pgsift.middleware.gateway.graphene_adapter import sync_field
from pgsift.middleware.settings import Settings

SECRET = "gateway-test-secret-of-at-least-32-bytes"
PGSIFT = Path(sys.executable).with_name("pgsift")
WAIT_S = 60.0

ISSUES_SCHEMA = """
CREATE TYPE issue_status AS ENUM ('open', 'doing', 'done');
CREATE TABLE issues (
    id bigint PRIMARY KEY,
    team_id int NOT NULL,
    title text NOT NULL,
    status issue_status NOT NULL DEFAULT 'open',
    points numeric,
    secret text
);
ALTER TABLE issues REPLICA IDENTITY FULL;  -- row policies need it (capture --setup sets it too)
"""
POLICIES = {
    "public.issues": {
        "columns": ["id", "team_id", "title", "status", "points"],
        "row": "team_id = ANY(auth.team_ids)",
    }
}


class Subscription(graphene.ObjectType):  # type: ignore[misc]
    """An app's own graphene schema with pgsift's `sync` mounted into it."""

    sync = sync_field()


class Query(graphene.ObjectType):  # type: ignore[misc]
    hello = graphene.String(default_value="world")


GRAPHENE_SCHEMA = graphene.Schema(query=Query, subscription=Subscription)
TRANSPORTS = ("strawberry", "graphene")


def app_options(transport: str) -> dict[str, Any]:
    """`create_app` options serving `transport`'s schema at /graphql."""
    return {"graphene_schema": GRAPHENE_SCHEMA} if transport == "graphene" else {}


def token(claims: dict[str, Any], *, expires_in: float = 3600.0, secret: str = SECRET) -> str:
    body = {**claims, "exp": int(time.time() + expires_in)}
    return "Bearer " + jwt.encode(body, secret, algorithm="HS256")


def gateway_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "policies": POLICIES,
        "auth_jwt_secret": SECRET,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def serve(settings: Settings, **app_options: Any) -> AsyncIterator[str]:
    """The gateway under uvicorn on a free port; yields its ws://.../graphql URL."""
    async with serving(create_app(settings, **app_options), settings) as url:
        yield url


@contextlib.asynccontextmanager
async def serving(app: Starlette, settings: Settings) -> AsyncIterator[str]:
    """`app` (made by `create_app(settings)`) under uvicorn; yields its ws://.../graphql URL.
    The test keeps the app to look at its state (`app.state.loader`, ...) once started."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            ws_ping_interval=None,
            ws_max_size=settings.gateway_max_frame_bytes,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.02)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait until `check()` holds; fail (not a timing assertion: a hang guard) after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)
