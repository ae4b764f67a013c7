"""`pgsift serve` as a subprocess, as a user runs it, for the end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.middleware.gateway.harness import POLICIES, SECRET, WAIT_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def toml_table(name: str, table: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def pgsift_serve(
    database_url: str, redis_url: str, tmp_path: Path, config: Path | None = None
) -> Iterator[str]:
    """`pgsift serve` as a subprocess (with `config`, else the harness's secret and
    policies); its ws:// URL once /healthz says ready."""
    if config is None:
        config = tmp_path / "pgsift.toml"
        config.write_text(
            toml_table("auth", {"jwt_secret": SECRET})
            + "".join(toml_table(f'policies."{t}"', p) for t, p in POLICIES.items()),
            encoding="utf-8",
        )
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("pgsift")), "serve", "--database-url", database_url,
         "--redis-url", redis_url, "--port", str(port), "--config", str(config)]
    )
    try:
        deadline = time.monotonic() + WAIT_S
        with httpx.Client() as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"pgsift serve exited with {process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("pgsift serve never became ready")
                time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        process.terminate()
        process.wait(10)
