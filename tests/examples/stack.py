"""pgsift in front of the example app, for end-to-end tests of the examples.

The issue tracker's schema and seed in the test database, `pgsift capture` and
the gateway as subprocesses (as a user runs them), and Postgres as the oracle of
what a client's copy must hold.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from examples.issue_tracker import DemoUser, apply_schema, demo_users
from examples.issue_tracker import seed as seed_data
from pgsift.middleware.embedded.ports import free_port
from tests.wire import described

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "issue_tracker" / "pgsift.toml"
PGSIFT = Path(sys.executable).with_name("pgsift")
# A hang guard for things that happen "soon", not a timing assertion.
WAIT_S = 60.0


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def gateway(database_url: str, redis_url: str) -> Iterator[str]:
    """`python -m examples.web.server` for the block: `pgsift serve`'s gateway plus the
    batch loader, the streaming bootstrap and the demo page, with the example's config.
    Yields its http:// base URL once healthy."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.web.server", "--database-url", database_url,
         "--redis-url", redis_url, "--port", str(port), "--config", str(EXAMPLE_CONFIG)],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}")
            try:
                return httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(healthy, "the gateway is healthy")
        yield base
    finally:
        _stop(process)


def seed_app(database_url: str, *, issues: int, seed: int) -> tuple[DemoUser, int]:
    """The issue tracker's schema and data; its first demo user and a team they are not in."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_schema(conn)
        seed_data(conn, issues=issues, seed=seed)
        user = demo_users(conn, limit=1)[0]
        other = conn.execute(
            "SELECT min(id) FROM teams WHERE id <> ALL(%s)", [list(user.team_ids)]
        ).fetchone()
    assert other is not None
    return user, int(other[0])


def key_text(key: Any) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def expected_rows(
    database_url: str, sql: str, params: Sequence[Any], primary_key: Sequence[str] = ("id",)
) -> dict[str, dict[str, Any]]:
    """What Postgres returns for `sql`, keyed and JSON-encoded as the gateway sends rows."""
    with psycopg.connect(database_url) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        positional = sql
        for index in range(len(params), 0, -1):
            positional = positional.replace(f"${index}", "%s")
        rows = cursor.execute(positional.encode(), list(params)).fetchall()
        wire = described(cursor.description)
    result = {}
    for row in rows:
        encoded = wire.mapping(row)
        result[key_text({column: encoded[column] for column in primary_key})] = encoded
    return result
