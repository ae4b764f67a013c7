"""The gateway binds its port before anything else: a taken port fails at once."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pgsift.middleware.errors import GatewayError
from pgsift.middleware.gateway.listen import bind


def test_bind_listens_on_the_port_it_was_given() -> None:
    with bind("127.0.0.1", 0) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5.0):
            pass


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        expected = f"cannot listen on 127.0.0.1:{port}: address already in use"
        with pytest.raises(GatewayError) as raised:
            bind("127.0.0.1", port)
        assert str(raised.value) == expected  # the address once, no "(while attempting ...)"


def test_serve_on_a_taken_port_exits_before_connecting_anywhere() -> None:
    """The URLs point nowhere: the error must be the port's, not a connection failure."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(Path(sys.executable).with_name("pgsift")), "serve", "--port", str(port),
             "--database-url", "postgresql://nobody@127.0.0.1:1/none",
             "--redis-url", "redis://127.0.0.1:1/0"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 2, result.stderr  # pgsift: error: ...
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
