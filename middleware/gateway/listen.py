"""Listening for the gateway: bind the port first, then start the app on it.

Binding before anything else means a taken port fails in a moment with a
clear error, instead of after the app has connected to Postgres and Redis
(uvicorn binds only after the app's startup).
"""

from __future__ import annotations

import gc
import os
import socket
from typing import TYPE_CHECKING

from pgsift.middleware.errors import GatewayError

# Allocations (minus frees) between two collections of the youngest generation.
# At the default 700, 20,000 subscriptions starting at once (each a few dozen small
# objects: shape, session, generator frames, inbox, futures) ran hundreds of
# collections, and every collection that reaches the older generations walks all the
# subscriptions' objects: a large share of serve's CPU while they subscribe.
# Cyclic garbage is rare here (most dies by reference counting); collecting it a
# little later costs little memory.
GC_GEN0_THRESHOLD = 20_000

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from pgsift.middleware.settings import Settings


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (port 0: any free one)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        # create_server appends the address to strerror; the message names it already.
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
        raise GatewayError(f"cannot listen on {host}:{port}: {reason}") from exc


def serve(app: ASGIApp, listener: socket.socket, settings: Settings) -> None:
    """Run `app` under uvicorn on `listener` until SIGINT/SIGTERM."""
    # Imported here: `bind` is also the demo's port check, which must answer at once.
    import uvicorn

    from pgsift.middleware.gateway.coalesced_writes import CoalescedWebSocketsProtocol

    # The modules, the app and its schema live as long as the process: frozen, no
    # collection walks them again (see GC_GEN0_THRESHOLD).
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ws=CoalescedWebSocketsProtocol,  # one socket write per connection and loop turn
        ws_max_size=settings.gateway_max_frame_bytes,
    )
    uvicorn.Server(config).run(sockets=[listener])
