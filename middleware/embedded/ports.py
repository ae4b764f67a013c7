"""Small process helpers shared by the embedded servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from pgsift.middleware.errors import EmbeddedServerError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(ready: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    """Poll `ready` until it returns True, or raise naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise EmbeddedServerError(f"{what} did not become ready within {timeout:.0f} s")


def accepts_connections(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
