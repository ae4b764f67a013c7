"""A Starlette app under a real uvicorn in a thread: real sockets, real streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from pgsift.middleware.bootstrap.http import BootstrapService, bootstrap_route
from pgsift.middleware.embedded.ports import free_port
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.wiring import Wiring


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Yields the base URL; stops the server on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def bootstrap_client(wiring: Wiring, secret: str) -> Iterator[httpx.Client]:
    """A client of `/v1/bootstrap` alone, served with `wiring`; tokens signed with `secret`."""
    app = Starlette(routes=[bootstrap_route(BootstrapService(wiring))])
    app.state.authenticator = Authenticator(secret=secret)
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        yield http
